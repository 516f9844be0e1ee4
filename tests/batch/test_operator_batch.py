"""The BatchPrediction's pure parts: spec parsing, the Indexed Job it becomes, status from observed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlrollout.operator.batch.jobs import EXIT_BAD_INPUT, EXIT_MODEL, build_job, job_name
from mlrollout.operator.batch.spec import InvalidBatchSpec, parse_batch_spec
from mlrollout.operator.batch.status import JobView, ShardPod, batch_status, indexes

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BP = {"metadata": {"name": "nightly", "namespace": "ns", "uid": "u-1"}}


def example_spec() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "batchprediction.yaml").read_text())
    return dict(doc["spec"])


def test_the_example_parses() -> None:
    spec = parse_batch_spec(example_spec())
    assert spec.model.model_deployment == "churn"
    assert spec.input_path == "/data/incoming/customers.csv"
    assert spec.output_path == "/data/scores/nightly"
    assert spec.shards == 4


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": {"name": "churn"}}, "spec.model"),
        ({"model": {"modelDeployment": "a", "version": "3"}}, "spec.model"),
        ({"volume": {}}, "spec.volume"),
        ({"output": "/abs"}, "spec.output"),
        ({"output": "a/../../etc"}, "spec.output"),
        ({"input": "../x.csv"}, "spec.input"),
    ],
)
def test_bad_specs_are_named(change: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidBatchSpec, match=named):
        parse_batch_spec({**example_spec(), **change})


def test_an_artifact_uri_input_is_passed_as_is() -> None:
    spec = parse_batch_spec({**example_spec(), "input": "mlflow-artifacts:/3/abc/artifacts/in.csv"})
    assert spec.input_path == "mlflow-artifacts:/3/abc/artifacts/in.csv"


def test_the_job_is_indexed_pinned_and_owned() -> None:
    spec = parse_batch_spec(example_spec())
    job = build_job(
        BP,
        spec,
        "mlflow-artifacts:/1/m/artifacts/model",
        image="serving:1",
        tracking_uri="http://mlflow:5000",
    )
    assert job["metadata"]["name"] == job_name("nightly") == "nightly-batch"
    assert job["metadata"]["ownerReferences"][0] | {} == {
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "BatchPrediction",
        "name": "nightly",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    s = job["spec"]
    assert (s["completionMode"], s["completions"], s["parallelism"], s["backoffLimitPerIndex"]) == (
        "Indexed",
        4,
        2,
        2,
    )
    rules = s["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "score", "operator": "In", "values": [EXIT_BAD_INPUT, EXIT_MODEL]},
    }
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    pod = s["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by podFailurePolicy
    container = pod["containers"][0]
    args = container["args"]
    assert args[args.index("--model-uri") + 1] == "mlflow-artifacts:/1/m/artifacts/model"
    assert args[args.index("--shards") + 1] == "4"
    assert args[args.index("--report") + 1] == container["terminationMessagePath"]
    assert "--shard" not in args, "the index comes from JOB_COMPLETION_INDEX"
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"} in container["env"]
    assert pod["volumes"][1] == {"name": "data", "persistentVolumeClaim": {"claimName": "churn-data"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_indexes_format() -> None:
    assert indexes("") == set()
    assert indexes("0-2,5") == {0, 1, 2, 5}


def job(**kw: Any) -> JobView:
    return JobView(start_time=NOW - timedelta(seconds=10), **kw)


def ok(index: int, rows: int) -> ShardPod:
    return ShardPod(index, "Succeeded", f'{{"rows": {rows}}}', 0)


def test_progress_while_running_and_the_started_event() -> None:
    status, events = batch_status(
        {"model": {"name": "m", "version": "3"}, "phase": "Pending"},
        shards=4,
        job_name="nightly-batch",
        job=job(active=2, completed_indexes="0,2"),
        pods=[ok(0, 100), ok(2, 120), ShardPod(1, "Running", "")],
        now=NOW,
    )
    assert status["phase"] == "Running"
    assert status["progress"] == "2/4"
    assert status["rows"] == 220
    assert status["rowsPerSecond"] == 22.0
    assert status["model"] == {"name": "m", "version": "3"}, "the pinned model is kept"
    assert [e.reason for e in events] == ["Started"]


def test_a_retried_index_counts_once_and_says_so() -> None:
    previous, _ = batch_status(
        {"phase": "Running"}, shards=2, job_name="j", job=job(active=2), pods=[], now=NOW
    )
    pods = [ShardPod(1, "Failed", "", 137), ok(1, 50), ok(0, 40)]
    status, events = batch_status(
        previous,
        shards=2,
        job_name="j",
        job=job(active=1, failed=1, completed_indexes="0-1"),
        pods=pods,
        now=NOW,
    )
    assert status["rows"] == 90
    assert status["shards"]["retried"] == 1
    assert [e.reason for e in events] == ["ShardRetried"]
    again, events = batch_status(
        status,
        shards=2,
        job_name="j",
        job=job(active=1, failed=1, completed_indexes="0-1"),
        pods=pods,
        now=NOW,
    )
    assert events == [], "no change, no Event"
    assert again == status, "no change, no write"


def test_a_finished_pod_deleted_later_keeps_its_rows() -> None:
    running = job(active=1, completed_indexes="0")
    first, _ = batch_status(
        {"phase": "Running"}, shards=2, job_name="j", job=running, pods=[ok(0, 40)], now=NOW
    )
    assert first["shardRows"] == {"0": 40}
    done = job(completed_indexes="0-1", conditions=(("Complete", "True", "", ""),), completion_time=NOW)
    # Shard 0's pod is gone by the time the Job completes (deleted by hand, or garbage-collected).
    status, _ = batch_status(first, shards=2, job_name="j", job=done, pods=[ok(1, 50)], now=NOW)
    assert status["rows"] == 90
    assert status["shardRows"] == {"0": 40, "1": 50}
    assert status["message"].startswith("90 rows in 10.0 s;"), status["message"]


def test_a_shard_whose_report_was_never_read_is_named_not_counted_as_zero() -> None:
    done = job(completed_indexes="0-2", conditions=(("Complete", "True", "", ""),), completion_time=NOW)
    status, _ = batch_status(
        {"phase": "Running"}, shards=3, job_name="j", job=done, pods=[ok(0, 5), ok(2, 7)], now=NOW
    )
    assert status["rows"] == 12
    assert status["shardRows"] == {"0": 5, "2": 7}
    unread = "not counting shard(s) [1]: their pods were deleted before their reports were read"
    assert unread in status["message"], status["message"]


def test_completion() -> None:
    done = job(completed_indexes="0-1", conditions=(("Complete", "True", "", ""),), completion_time=NOW)
    status, events = batch_status(
        {"phase": "Running"}, shards=2, job_name="j", job=done, pods=[ok(0, 5), ok(1, 5)], now=NOW
    )
    assert status["phase"] == "Succeeded"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Complete": "True", "Failed": "False"}
    assert [e.reason for e in events] == ["Succeeded"]


def test_a_bad_row_fails_with_the_shards_own_words() -> None:
    error = "{\"error\": \"/data/in.csv line 1234: column 'f3': 'abc' is not a number\"}"
    failed = job(failed=1, conditions=(("Failed", "True", "PodFailurePolicy", "Container score exited 2"),))
    status, events = batch_status(
        {"phase": "Running"},
        shards=2,
        job_name="j",
        job=failed,
        pods=[ok(0, 10), ShardPod(1, "Failed", error, 2)],
        now=NOW,
    )
    assert status["phase"] == "Failed"
    assert status["message"] == "shard 1: /data/in.csv line 1234: column 'f3': 'abc' is not a number"
    failed_condition = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed_condition["reason"] == "PodFailurePolicy"
    assert failed_condition["message"] == status["message"]
    assert [(e.type, e.reason) for e in events] == [("Warning", "Failed")]


def test_condition_times_are_kept_while_unchanged() -> None:
    first, _ = batch_status({}, shards=1, job_name="j", job=job(active=1), pods=[], now=NOW)
    later, _ = batch_status(
        first, shards=1, job_name="j", job=job(active=1), pods=[], now=NOW + timedelta(minutes=5)
    )
    assert later["conditions"] == first["conditions"]

"""BatchPrediction on real pods: the installed operator runs a 4-shard Indexed Job of the serving image
on the real node over a file on a hostPath volume, with the model pinned from the real MLflow registry.

A complete run: every input row scored exactly once, ids kept, predictions equal to MLflow pyfunc's,
`kubectl get bp` showing the shards done while it runs, a manifest written. A shard's pod killed
mid-run: the index is retried (and resumes from its checkpoint), the result has no duplicate or
missing row. A malformed file: the run fails with a condition naming the file, line and column, and
no manifest presents partial output as complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster
from real_stack import IN_CLUSTER_MLFLOW
from support.mlflow_models import ModelVersionInfo, load_dataset, train_and_register

pytestmark = pytest.mark.realnode
MODEL = "node-batch"
ROWS = 120_000
SHARDS = 4
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def version(node_mlflow: Any) -> ModelVersionInfo:
    return train_and_register(node_mlflow.tracking_uri, MODEL, seed=0)


@pytest.fixture(scope="module")
def serving_image(node_image: Callable[[str], str]) -> str:
    return node_image("mlrollout-serving")


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """A host directory the pods mount by hostPath (the node is this machine); world-writable because
    the shards run as uid 10001 and hostPath volumes get no fsGroup."""
    path = Path(tempfile.mkdtemp(prefix="mlrollout-batch-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def rows_csv(data_dir: Path) -> Path:
    """ROWS rows like the breast-cancer features (resampled with noise), an id and an ignored label."""
    import numpy as np

    features, target, _ = load_dataset("breast_cancer")
    rng = np.random.default_rng(7)
    picks = rng.integers(0, len(features), size=ROWS)
    frame = features.iloc[picks].reset_index(drop=True)
    frame = frame * rng.normal(1.0, 0.02, size=frame.shape)
    frame.insert(0, "id", [f"r{i}" for i in range(ROWS)])
    frame["label"] = target.iloc[picks].to_numpy()
    path = data_dir / "rows.csv"
    frame.to_csv(path, index=False)
    path.chmod(0o644)
    return path


def bp_manifest(
    name: str, version: ModelVersionInfo, data_dir: Path, input_name: str, image: str, **extra: Any
) -> str:
    spec: dict[str, Any] = {
        "model": {"name": version.name, "version": version.version},
        "image": image,
        "registry": {"trackingUri": IN_CLUSTER_MLFLOW},
        "volume": {"hostPath": {"path": str(data_dir), "type": "Directory"}},
        "input": input_name,
        "output": f"out/{name}",
        "idColumn": "id",
        "shards": SHARDS,
        "parallelism": 2,
        "backoffLimitPerIndex": 2,
        "resources": {"requests": {"cpu": "50m", "memory": "200Mi"}, "limits": {"memory": "768Mi"}},
        # Small blocks (one checkpoint each) keep every shard running for seconds: time to kill one.
        "env": [{"name": "MLROLLOUT_BATCH_BLOCK_MB", "value": "0.05"}],
        **extra,
    }
    return json.dumps({"apiVersion": "mlrollout.io/v1alpha1", "kind": "BatchPrediction",
                       "metadata": {"name": name}, "spec": spec})  # fmt: skip


def get_bp(node: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    out = node.kubectl("-n", namespace, "get", "bp", name, "-o", "json")
    return dict(json.loads(out.stdout))


def wait_for(what: str, check: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{describe()}")


def describe(node: LocalCluster, namespace: str) -> Callable[[], str]:
    def text() -> str:
        parts = [
            node.kubectl("-n", namespace, "get", "bp,jobs,pods", "-o", "wide", check=False).stdout,
            node.kubectl("-n", namespace, "describe", "bp", check=False).stdout[-3000:],
        ]
        return "\n".join(parts)

    return text


def read_parts(directory: Path) -> Any:
    import pandas as pd

    parts = sorted(directory.glob("part-*.csv"))
    assert len(parts) == SHARDS, f"parts: {[p.name for p in parts]}"
    return pd.concat([pd.read_csv(p, dtype={"id": str}) for p in parts], ignore_index=True)


def expected_predictions(version: ModelVersionInfo, rows_csv: Path, tracking_uri: str) -> Any:
    import mlflow.pyfunc
    import pandas as pd

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    frame = pd.read_csv(rows_csv, dtype={"id": str})
    oracle = mlflow.pyfunc.load_model(version.model_uri)
    return frame["id"].tolist(), [int(v) for v in oracle.predict(frame[version.feature_names])]


def test_a_four_shard_run_scores_every_row_once_and_survives_a_killed_shard(
    node: LocalCluster, installed_operator: Any, real_namespace: str, version: ModelVersionInfo,
    data_dir: Path, rows_csv: Path, node_mlflow: Any, serving_image: str,
) -> None:  # fmt: skip
    name = "full"
    node.kubectl(
        "-n",
        real_namespace,
        "apply",
        "-f",
        "-",
        input=bp_manifest(name, version, data_dir, rows_csv.name, serving_image),
    )
    progress_seen: set[str] = set()
    killed: list[str] = []

    def watch() -> bool:
        # PROGRESS as `kubectl get bp` prints it (read by the header's column positions).
        lines = node.kubectl("-n", real_namespace, "get", "bp", name, check=False).stdout.splitlines()
        if len(lines) == 2 and "PROGRESS" in lines[0]:
            start, end = lines[0].index("PROGRESS"), lines[0].index("PHASE")
            progress_seen.add(lines[1][start:end].strip())
        if not killed:
            # Kill the first shard whose checkpoint shows it less than half done: killed any later,
            # it may finish (exit 0) between this look and the kubelet's SIGTERM, and nothing retries.
            for partial in data_dir.glob(f"out/{name}/part-*.csv.partial.json"):
                try:
                    rows_done = int(json.loads(partial.read_text())["rows"])
                except (OSError, ValueError, KeyError):
                    continue  # replaced or removed as we read it
                if rows_done >= ROWS // SHARDS // 2:
                    continue
                index = int(partial.name.split("-")[1].split(".")[0])
                pods = json.loads(
                    node.kubectl("-n", real_namespace, "get", "pods", "-l",
                                 f"batch.kubernetes.io/job-completion-index={index}", "-o", "json").stdout
                )["items"]  # fmt: skip
                running = [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"]
                if running:
                    node.kubectl(
                        "-n", real_namespace, "delete", "pod", running[0], "--grace-period=1", "--wait=false"
                    )
                    killed.append(running[0])
                    break
        return get_bp(node, real_namespace, name).get("status", {}).get("phase") in {"Succeeded", "Failed"}

    wait_for("the BatchPrediction to finish", watch, RUN_TIMEOUT, describe(node, real_namespace))
    bp = get_bp(node, real_namespace, name)
    status = bp["status"]
    assert status["phase"] == "Succeeded", describe(node, real_namespace)()
    assert killed, "no shard was caught mid-run to kill"
    assert status["shards"]["retried"] >= 1, status
    assert status["model"]["version"] == version.version
    assert status["rows"] == ROWS
    partway = {f"{n}/{SHARDS}" for n in range(1, SHARDS)}
    assert progress_seen & partway, f"kubectl get bp never showed a run part-way: {progress_seen}"
    out = data_dir / "out" / name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == ROWS
    assert (out / "_SUCCESS").exists()
    got = read_parts(out)
    ids, predictions = expected_predictions(version, rows_csv, node_mlflow.tracking_uri)
    assert got["id"].tolist() == ids, "rows missing, duplicated or out of order"
    assert got["prediction"].tolist() == predictions
    events = node.kubectl("-n", real_namespace, "get", "events", "--field-selector",
                          f"involvedObject.name={name}", "-o", "json").stdout  # fmt: skip
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"ModelPinned", "Succeeded"} <= reasons, reasons


def test_a_malformed_file_fails_naming_file_line_and_column(
    node: LocalCluster, installed_operator: Any, real_namespace: str, version: ModelVersionInfo,
    data_dir: Path, rows_csv: Path, serving_image: str,
) -> None:  # fmt: skip
    lines = rows_csv.read_text().splitlines()
    header = lines[0].split(",")
    column = version.feature_names[3]
    bad_line = 90_001  # in the last shard's byte range
    cells = lines[bad_line - 1].split(",")
    cells[header.index(column)] = "twelve"
    lines[bad_line - 1] = ",".join(cells)
    bad = data_dir / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    bad.chmod(0o644)
    name = "malformed"
    node.kubectl(
        "-n",
        real_namespace,
        "apply",
        "-f",
        "-",
        input=bp_manifest(name, version, data_dir, bad.name, serving_image),
    )

    def ended() -> bool:
        return get_bp(node, real_namespace, name).get("status", {}).get("phase") in {"Succeeded", "Failed"}

    wait_for("the BatchPrediction to fail", ended, RUN_TIMEOUT, describe(node, real_namespace))
    status = get_bp(node, real_namespace, name)["status"]
    assert status["phase"] == "Failed"
    expected = f"/data/bad.csv line {bad_line}: column '{column}': 'twelve' is not a number"
    assert expected in status["message"], status["message"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True"
    assert expected in failed["message"]
    out = data_dir / "out" / name
    assert not (out / "manifest.json").exists()
    assert not (out / "_SUCCESS").exists()


def test_the_schema_refuses_a_spec_with_two_model_sources(
    node: LocalCluster, installed_operator: Any, real_namespace: str
) -> None:
    manifest = json.dumps({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "BatchPrediction", "metadata": {"name": "two"},
        "spec": {"model": {"modelDeployment": "churn", "name": "churn", "version": "1"},
                 "volume": {"hostPath": {"path": "/tmp"}}, "input": "a.csv", "output": "out"},
    })  # fmt: skip
    result = node.kubectl("-n", real_namespace, "apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert "modelDeployment alone, or name with exactly one of version or alias" in result.stderr

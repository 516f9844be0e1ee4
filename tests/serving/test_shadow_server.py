"""Shadow mirroring between two real servers (`mlrollout-serve`: gunicorn, 3 workers each) serving
versions registered in the real MLflow server: the stable one copies every scoring request to the
shadow one. Copies leave from every worker (threads started after fork), the comparisons add up
across workers in /metrics, and any worker answers /shadow/disagreements with every worker's rows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_harness import WORKERS, RunningServer, start_server
from support.mlflow_models import ModelVersionInfo, load_dataset, train_and_register

MODEL = "serving-shadow-bc"
REQUESTS = 90
WAIT = 60.0


@pytest.fixture(scope="module")
def versions(mlflow_server: Any) -> tuple[ModelVersionInfo, ModelVersionInfo]:
    uri = mlflow_server.tracking_uri
    return train_and_register(uri, MODEL), train_and_register(uri, MODEL, quality="poor", seed=3)


@pytest.fixture(scope="module")
def pair(
    versions: tuple[ModelVersionInfo, ModelVersionInfo],
    component_logs: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, RunningServer]]:
    good, poor = versions
    shadow = start_server(
        "mlrollout-serve-shadow",
        poor.model_uri,
        component_logs,
        tmp_path_factory.mktemp("shadow"),
        model_info=poor,
    )
    settings = tmp_path_factory.mktemp("settings") / "shadow.json"
    settings.write_text(json.dumps({"target": shadow.url, "version": poor.version, "percent": 100}))
    stable = start_server(
        "mlrollout-serve-stable",
        good.model_uri,
        component_logs,
        tmp_path_factory.mktemp("stable"),
        extra_env={"MLROLLOUT_TRACK": "stable", "MLROLLOUT_SHADOW_CONFIG": str(settings)},
        model_info=good,
    )
    try:
        yield stable, shadow
    finally:
        for server in (stable, shadow):
            assert server.process.stop() == 0, f"{server.url} did not shut down cleanly"


def metric(server: RunningServer, name: str, **labels: str) -> float:
    """A sample summed over every series of `name` whose labels include `labels`, all workers."""
    total = 0.0
    for line in server.get("/metrics").text.splitlines():
        if not line.startswith(name + "{"):
            continue
        body, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in body for k, v in labels.items()):
            total += float(value)
    return total


def wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out after {WAIT}s waiting for {what}"
        time.sleep(0.1)


def test_every_worker_mirrors_and_the_sample_is_shared(
    pair: tuple[RunningServer, RunningServer], versions: tuple[ModelVersionInfo, ModelVersionInfo]
) -> None:
    stable, shadow = pair
    good, poor = versions
    x, _, _ = load_dataset("breast_cancer")
    rows = x.head(50).to_dict(orient="records")  # both classes: a shuffled-labels model errs on some
    body = {"dataframe_records": rows}
    expected = stable.post("/invocations", json=body).json()["predictions"]
    for i in range(REQUESTS):
        # A new connection each time, so gunicorn's workers share the requests.
        r = stable.post("/invocations", json=body, headers={"Connection": "close", "X-Request-ID": f"q{i}"})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected  # always the stable version's answer
        assert r.headers["X-Model-Version"] == good.version
    sent = REQUESTS + 1
    wait_for(
        f"{sent} answered copies",
        lambda: (
            metric(stable, "mlrollout_shadow_requests_total", outcome="answered", shadow_version=poor.version)
            == sent
        ),
    )
    agree = metric(stable, "mlrollout_shadow_rows_total", result="agree")
    disagree = metric(stable, "mlrollout_shadow_rows_total", result="disagree")
    assert agree + disagree == sent * len(rows)
    assert disagree > 0  # shuffled labels: it disagrees somewhere
    # The shadow counted the copies as its own requests (its error rate and latency on them).
    assert metric(shadow, "mlrollout_requests_total", endpoint="invocations", status="200") == sent

    def files() -> list[Path]:
        return sorted((stable.metrics_dir / "shadow").glob("disagreements-*.json"))

    wait_for("the disagreement files of several workers", lambda: len(files()) >= 2)
    assert len(files()) <= WORKERS
    sample = stable.get("/shadow/disagreements", params={"limit": 1000}).json()
    assert sample["shadow"]["version"] == poor.version
    records = sample["disagreements"]
    assert 0 < len(records) <= min(disagree, 100)  # newest first, bounded by the sample size
    assert [r["time"] for r in records] == sorted((r["time"] for r in records), reverse=True)
    assert all("input" not in r for r in records)
    assert {r["stableVersion"] for r in records} == {good.version}
    assert all(r["stablePrediction"] != r["shadowPrediction"] for r in records)

"""The analysis contract against the real serving server: models registered in a real MLflow server,
served by `mlrollout-serve` (gunicorn, 2 workers each), scraped by a real Prometheus with the target
labels the install manifests' scrape config derives from pod labels, judged by `analyze`.

Three servers: the good v1 as stable; a v2 trained on permuted labels (low live F1) as the canary of
ModelDeployment "f1-drop"; a second good model (another seed), v3, as the canary of "healthy".
The stable server is scraped twice, once per ModelDeployment, as two targets with different labels.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from mlrollout.operator.analysis import (
    Action,
    AnalysisOutcome,
    AnalysisSpec,
    AnalysisState,
    AnalysisTarget,
    MetricKind,
    PrometheusClient,
    Verdict,
    analyze,
)
from support.ci import unavailable
from support.mlflow_models import ModelVersionInfo, load_dataset, train_and_register
from support.procs import ManagedProcess, free_port
from support.prometheus import PrometheusServer, PrometheusUnavailable, ScrapeTarget

NAMESPACE = "analysis-serving"
MODEL = "analysis-breast-cancer"
REQUESTS_PER_SERVER = 40
ROWS_PER_REQUEST = 5


@dataclass
class Served:
    url: str
    info: ModelVersionInfo
    process: ManagedProcess


def serve(name: str, info: ModelVersionInfo, track: str, component_logs: Any, tmp: Path) -> Served:
    """Start `mlrollout-serve`; call ready() before use (servers load their models in parallel)."""
    port = free_port()
    env = {
        **os.environ,
        "MLROLLOUT_MODEL_URI": info.source,  # pods get the pinned artifact, not the registry
        "MLROLLOUT_MODEL_NAME": info.name,
        "MLROLLOUT_MODEL_VERSION": info.version,
        "MLROLLOUT_TRACK": track,
        "MLROLLOUT_BIND": f"127.0.0.1:{port}",
        "MLROLLOUT_WORKERS": "2",
        "MLROLLOUT_THREADS": "2",
        "MLROLLOUT_LOG_REQUESTS": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / name),
    }
    cli = Path(sys.executable).parent / "mlrollout-serve"
    process = ManagedProcess.start(name, [str(cli)], env=env, logs=component_logs)
    return Served(f"http://127.0.0.1:{port}", info, process)


def ready(server: Served) -> None:
    server.process.wait_http(server.url + "/v2/health/ready", timeout=120)


def drive(server: Served, rows: list[dict[str, float]], labels: list[int], requests_count: int) -> None:
    """Score `requests_count` requests of ROWS_PER_REQUEST rows and send the true labels for each."""
    with requests.Session() as http:
        for i in range(requests_count):
            start = (i * ROWS_PER_REQUEST) % (len(rows) - ROWS_PER_REQUEST)
            batch = rows[start : start + ROWS_PER_REQUEST]
            scored = http.post(f"{server.url}/invocations", json={"dataframe_records": batch}, timeout=30)
            assert scored.status_code == 200, scored.text
            feedback = {
                "request_id": scored.headers["X-Request-ID"],
                "labels": labels[start : start + ROWS_PER_REQUEST],
            }
            answer = http.post(f"{server.url}/feedback", json=feedback, timeout=30)
            assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def stack(
    mlflow_server: Any, component_logs: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PrometheusServer, dict[str, Served]]]:
    uri = mlflow_server.tracking_uri
    v1 = train_and_register(uri, MODEL, quality="good")
    v2 = train_and_register(uri, MODEL, quality="poor")
    v3 = train_and_register(uri, MODEL, quality="good", seed=1)
    tmp = tmp_path_factory.mktemp("analysis-serving")
    servers: dict[str, Served] = {}
    prom = PrometheusServer(name="prometheus-serving-analysis")
    try:
        servers["stable"] = serve("serve-stable-v1", v1, "stable", component_logs, tmp)
        servers["poor"] = serve("serve-canary-poor-v2", v2, "canary", component_logs, tmp)
        servers["good"] = serve("serve-canary-good-v3", v3, "canary", component_logs, tmp)
        for server in servers.values():
            ready(server)

        def at(server: Served, md: str, track: str) -> ScrapeTarget:
            address = server.url.removeprefix("http://")
            return ScrapeTarget(address, {"namespace": NAMESPACE, "model_deployment": md, "track": track})

        targets = [
            at(servers["stable"], "f1-drop", "stable"),
            at(servers["poor"], "f1-drop", "canary"),
            at(servers["stable"], "healthy", "stable"),
            at(servers["good"], "healthy", "canary"),
        ]
        prom.start(targets, component_logs.path("prometheus-serving-analysis"))
        prom.wait_for_targets(len(targets), timeout=60)
        features, truth, names = load_dataset("breast_cancer")
        rows = [{n: float(r[n]) for n in names} for r in features.to_dict("records")]
        labels = [int(v) for v in truth]
        # Warm-up creates every series (both classes, all confusion cells) and lets Prometheus see it
        # once: increase() cannot count what happened before a series' first scrape.
        for server in servers.values():
            drive(server, rows, labels, 8)
        warm = f'sum by (model_deployment, track) (mlrollout_feedback_total{{namespace="{NAMESPACE}"}})'
        prom.wait_until(
            "all warm-up labels scraped on all four targets",
            lambda: len([r for r in prom.query(warm) if float(r["value"][1]) >= 8 * ROWS_PER_REQUEST]) == 4,
            timeout=60,
        )
        for server in servers.values():
            drive(server, rows, labels, REQUESTS_PER_SERVER)
        # A bad request is the client's fault: it must not count as an error of the healthy canary.
        bad = requests.post(
            f"{servers['good'].url}/invocations", json={"dataframe_records": [{"x": 1}]}, timeout=30
        )
        assert 400 <= bad.status_code < 500, bad.text
        done = (
            f'sum by (model_deployment, track) (increase(mlrollout_requests_total{{namespace="{NAMESPACE}", '
            'endpoint="invocations", status="200"}[60s]))'
        )
        prom.wait_until(
            "the burst scraped on all four targets",
            lambda: len([r for r in prom.query(done) if float(r["value"][1]) >= REQUESTS_PER_SERVER]) == 4,
            timeout=60,
        )
        yield prom, servers
    except PrometheusUnavailable as exc:
        unavailable(str(exc))
    finally:
        prom.stop()
        for server in servers.values():
            server.process.stop()


def analysis(prom: PrometheusServer, md: str, canary: Served, stable: Served) -> AnalysisOutcome:
    spec = AnalysisSpec.from_dict(
        {
            "interval": "30s",
            "window": "60s",
            "minSamples": 30,
            "prometheus": {"address": prom.url},
            "metrics": [
                {"name": "errorRate", "max": 0.01},
                {"name": "latencyP99Ms", "max": 2000},
                {"name": "liveF1", "min": 0.8, "maxRegression": 0.1},
                {"name": "predictionDrift", "max": 0.2},
            ],
        }
    )
    target = AnalysisTarget(
        NAMESPACE, md, canary_version=canary.info.version, stable_version=stable.info.version
    )

    async def go() -> AnalysisOutcome:
        async with PrometheusClient(prom.url) as client:
            return await analyze(client, spec, target, AnalysisState(), now=datetime.now(UTC))

    return asyncio.run(go())


def test_low_live_f1_of_a_real_canary_fails(stack: tuple[PrometheusServer, dict[str, Served]]) -> None:
    prom, servers = stack
    outcome = analysis(prom, "f1-drop", servers["poor"], servers["stable"])
    by_metric = {m.metric: m for m in outcome.measurements}
    f1 = by_metric[MetricKind.LIVE_F1]
    assert f1.verdict is Verdict.FAILED, outcome.reason
    assert f1.stable_value is not None
    assert f1.stable_value > 0.85  # the good stable model on its own training data
    assert f1.value is not None
    assert f1.value < f1.stable_value - 0.1
    assert f1.samples >= REQUESTS_PER_SERVER * ROWS_PER_REQUEST * 0.8
    assert by_metric[MetricKind.ERROR_RATE].verdict is Verdict.PASSED
    assert outcome.verdict is Verdict.FAILED


def test_healthy_real_canary_passes(stack: tuple[PrometheusServer, dict[str, Served]]) -> None:
    prom, servers = stack
    outcome = analysis(prom, "healthy", servers["good"], servers["stable"])
    assert outcome.verdict is Verdict.PASSED, outcome.reason
    assert outcome.action is Action.PROCEED
    by_metric = {m.metric: m for m in outcome.measurements}
    assert by_metric[MetricKind.ERROR_RATE].value == 0.0  # the 4xx does not count
    assert by_metric[MetricKind.ERROR_RATE].samples >= REQUESTS_PER_SERVER
    assert by_metric[MetricKind.LATENCY_P99_MS].value is not None

"""Canary analysis against a real Prometheus scraping real HTTP exporters on loopback.

One exporter process serves twelve targets: six ModelDeployments, each with a stable and a canary
track, labelled the way the install manifests' scrape config labels pods. Each canary has one
controlled defect (or none); the analysis must find exactly that defect.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mlrollout.operator.analysis import (
    Action,
    AnalysisOutcome,
    AnalysisSpec,
    AnalysisState,
    AnalysisTarget,
    MetricKind,
    PrometheusClient,
    PrometheusError,
    SeriesNames,
    Verdict,
    analyze,
)
from mlrollout.operator.analysis.metrics import AnalysisMetrics
from mlrollout.operator.analysis.runner import AnalysisRunner, Tick
from mlrollout.operator.model import AnalysisResult, Status, Track
from prometheus_client import CollectorRegistry
from support.ci import unavailable
from support.procs import ManagedProcess, ProcessFailed
from support.prometheus import PrometheusServer, PrometheusUnavailable, ScrapeTarget

EXPORTER = Path(__file__).with_name("serving_exporter.py")
NAMESPACE = "analysis-it"
WINDOW_SECONDS = 10
HEALTHY: dict[str, Any] = {
    "rps": 40,
    "error_fraction": 0.0,
    "latency_ms": 20,
    "feedback_rps": 20,
    "correct_fraction": 0.95,
    "class_shares": {"0": 0.5, "1": 0.5},
}
# model_deployment -> how its canary differs from a healthy stable
CANARIES: dict[str, dict[str, Any]] = {
    "good": {},
    "errors": {"error_fraction": 0.2},
    "refusing": {"client_error_fraction": 1.0},  # a signature change: every request answered 422
    "lowf1": {"correct_fraction": 0.3},
    "slow": {"latency_ms": 400},
    "drift": {"class_shares": {"0": 0.9, "1": 0.1}},
    "idle": {"rps": 0, "feedback_rps": 0},
}


def spec_for(address: str, **overrides: Any) -> AnalysisSpec:
    raw: dict[str, Any] = {
        "interval": "5s",
        "window": f"{WINDOW_SECONDS}s",
        "minSamples": 100,
        "failureLimit": 2,
        "prometheus": {"address": address, "timeoutSeconds": 5},
        "metrics": [
            {"name": "errorRate", "max": 0.05},
            {"name": "latencyP99Ms", "max": 200, "maxRegression": 100},
            {"name": "liveF1", "min": 0.8, "maxRegression": 0.1, "minSamples": 50},
            {"name": "predictionDrift", "max": 0.2},
        ],
        **overrides,
    }
    return AnalysisSpec.from_dict(raw)


def target(md: str, canary_version: str = "2") -> AnalysisTarget:
    return AnalysisTarget(NAMESPACE, md, canary_version=canary_version, stable_version="1")


def run(
    address: str,
    md: str,
    state: AnalysisState | None = None,
    *,
    spec: AnalysisSpec | None = None,
    names: SeriesNames | None = None,
    canary_version: str = "2",
    timeout: float = 5.0,
) -> AnalysisOutcome:
    async def go() -> AnalysisOutcome:
        async with PrometheusClient(address, timeout_seconds=timeout) as client:
            return await analyze(
                client,
                spec or spec_for(address),
                target(md, canary_version),
                state or AnalysisState(),
                now=datetime.now(UTC),
                **({"names": names} if names else {}),
            )

    return asyncio.run(go())


def verdicts(outcome: AnalysisOutcome) -> dict[MetricKind, Verdict]:
    return {m.metric: m.verdict for m in outcome.measurements}


def exporter_ports(exporter: ManagedProcess, ports_file: Path, timeout: float) -> list[int]:
    """The ports the exporter bound (it picks them itself: see serving_exporter.py)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ports_file.exists():
            return [int(p) for p in json.loads(ports_file.read_text())]
        if not exporter.alive:
            break
        time.sleep(0.1)
    raise ProcessFailed(f"no ports in {ports_file} after {timeout:.0f} s; exporter log {exporter.log_path}")


@pytest.fixture(scope="module")
def prometheus(component_logs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    profiles, labels = [], []
    for md, canary in CANARIES.items():
        for track, version, overrides in (("stable", "1", {}), ("canary", "2", canary)):
            profiles.append({"track": track, "version": version, **HEALTHY, **overrides})
            labels.append({"namespace": NAMESPACE, "model_deployment": md, "track": track})
    ports_file = tmp_path_factory.mktemp("exporter") / "ports.json"
    exporter = ManagedProcess.start(
        "analysis-exporter",
        [sys.executable, str(EXPORTER), "--max-seconds", "900", "--ports-file", str(ports_file),
         json.dumps(profiles)],
        logs=component_logs,
    )  # fmt: skip
    prom = PrometheusServer()
    try:
        ports = exporter_ports(exporter, ports_file, timeout=30)
        scrape = [ScrapeTarget(f"127.0.0.1:{port}", label) for port, label in zip(ports, labels, strict=True)]
        exporter.wait_http(f"http://{scrape[-1].address}/metrics", timeout=30)
        # Start with no targets and add them live: the path the e2e tests take as pods appear.
        prom.start([], component_logs.path("prometheus-analysis"))
        prom.set_targets(scrape)
        prom.wait_for_targets(len(scrape), timeout=60)
        # A full window of traffic on every busy track before judging anything.
        busy = (
            "sum by (model_deployment, track) "
            '(increase(mlrollout_requests_total{model_deployment!="idle"}[10s]))'
        )
        prom.wait_until(
            "a full window of requests on every busy track",
            lambda: len([r for r in prom.query(busy) if float(r["value"][1]) >= 300]) == len(scrape) - 2,
            timeout=90,
        )
        yield prom
    except PrometheusUnavailable as exc:
        unavailable(str(exc))
    except ProcessFailed as exc:
        pytest.fail(f"analysis test stack did not start: {exc}")
    finally:
        prom.stop()
        exporter.stop()


def test_good_canary_passes_every_metric(prometheus: PrometheusServer) -> None:
    outcome = run(prometheus.url, "good")
    assert outcome.verdict is Verdict.PASSED, outcome.reason
    assert outcome.action is Action.PROCEED
    by_metric = {m.metric: m for m in outcome.measurements}
    assert by_metric[MetricKind.ERROR_RATE].value == 0.0
    assert by_metric[MetricKind.ERROR_RATE].samples >= 100
    p99 = by_metric[MetricKind.LATENCY_P99_MS].value
    assert p99 is not None
    assert 10 < p99 < 50  # 20 ms lands in the 10-25 ms bucket
    assert by_metric[MetricKind.LIVE_F1].value == pytest.approx(0.95, abs=0.05)
    assert by_metric[MetricKind.LIVE_F1].stable_value == pytest.approx(0.95, abs=0.05)
    drift = by_metric[MetricKind.PREDICTION_DRIFT].value
    assert drift is not None
    assert drift < 0.05
    status = outcome.to_status("2")
    json.dumps(status, allow_nan=False)  # what goes into the ModelDeployment status must be valid JSON
    assert status["metrics"]["errorRate"]["samples"] >= 100


def test_erroring_canary_fails_and_rolls_back_at_the_failure_limit(prometheus: PrometheusServer) -> None:
    first = run(prometheus.url, "errors")
    assert first.verdict is Verdict.FAILED
    assert verdicts(first)[MetricKind.ERROR_RATE] is Verdict.FAILED
    assert verdicts(first)[MetricKind.LIVE_F1] is Verdict.PASSED
    error_rate = next(m for m in first.measurements if m.metric is MetricKind.ERROR_RATE)
    assert error_rate.value == pytest.approx(0.2, abs=0.05)
    assert "errorRate" in first.reason
    assert (first.action, first.state.consecutive_failures) == (Action.HOLD, 1)
    second = run(prometheus.url, "errors", first.state)
    assert (second.action, second.state.consecutive_failures) == (Action.ROLLBACK, 2)
    assert "failure 2 of 2" in second.reason


def test_canary_refusing_every_request_fails_error_rate_by_default(prometheus: PrometheusServer) -> None:
    """4xx for every request is not the clients' fault when stable answers the same clients."""
    only_errors = {"metrics": [{"name": "errorRate", "max": 0.05}]}
    first = run(prometheus.url, "refusing", spec=spec_for(prometheus.url, **only_errors))
    error_rate = next(m for m in first.measurements if m.metric is MetricKind.ERROR_RATE)
    assert error_rate.verdict is Verdict.FAILED
    assert error_rate.value == pytest.approx(0.95, abs=0.05)  # all refused, less the 5% margin
    second = run(prometheus.url, "refusing", first.state, spec=spec_for(prometheus.url, **only_errors))
    assert second.action is Action.ROLLBACK
    ignoring = {"metrics": [{"name": "errorRate", "max": 0.05, "clientErrors": "ignore"}]}
    assert (
        run(prometheus.url, "refusing", spec=spec_for(prometheus.url, **ignoring)).verdict is Verdict.PASSED
    )


def test_low_live_f1_canary_fails(prometheus: PrometheusServer) -> None:
    outcome = run(prometheus.url, "lowf1")
    assert outcome.verdict is Verdict.FAILED
    assert verdicts(outcome) == {
        MetricKind.ERROR_RATE: Verdict.PASSED,
        MetricKind.LATENCY_P99_MS: Verdict.PASSED,
        MetricKind.LIVE_F1: Verdict.FAILED,
        MetricKind.PREDICTION_DRIFT: Verdict.PASSED,
    }
    f1 = next(m for m in outcome.measurements if m.metric is MetricKind.LIVE_F1)
    assert f1.value is not None
    assert f1.value < 0.5
    assert f1.stable_value is not None
    assert f1.threshold == pytest.approx(f1.stable_value - 0.1)  # relative beats absolute 0.8


def test_slow_canary_fails_on_latency(prometheus: PrometheusServer) -> None:
    outcome = run(prometheus.url, "slow")
    assert verdicts(outcome)[MetricKind.LATENCY_P99_MS] is Verdict.FAILED
    assert verdicts(outcome)[MetricKind.ERROR_RATE] is Verdict.PASSED
    assert outcome.verdict is Verdict.FAILED


def test_drifting_canary_fails_on_psi(prometheus: PrometheusServer) -> None:
    outcome = run(prometheus.url, "drift")
    drift = next(m for m in outcome.measurements if m.metric is MetricKind.PREDICTION_DRIFT)
    assert drift.verdict is Verdict.FAILED
    assert drift.value == pytest.approx(0.879, abs=0.15)  # 90/10 vs 50/50: 0.4 ln 1.8 + 0.4 ln 5
    assert outcome.verdict is Verdict.FAILED


def test_no_traffic_is_inconclusive_and_held(prometheus: PrometheusServer) -> None:
    outcome = run(prometheus.url, "idle")
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert set(verdicts(outcome).values()) == {Verdict.INCONCLUSIVE}
    assert "canary has 0 requests, below minSamples 100" in outcome.reason
    assert outcome.action is Action.HOLD
    assert outcome.state.consecutive_failures == 0


def test_wrong_canary_version_is_not_mixed_in(prometheus: PrometheusServer) -> None:
    outcome = run(prometheus.url, "good", canary_version="3")
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert "no request series for the canary track" in outcome.reason


def test_query_error_is_inconclusive_with_prometheus_message(prometheus: PrometheusServer) -> None:
    async def bad_query() -> None:
        async with PrometheusClient(prometheus.url) as client:
            await client.query("sum(")

    with pytest.raises(PrometheusError, match="bad_data"):
        asyncio.run(bad_query())
    spec = spec_for(prometheus.url, metrics=[{"name": "errorRate", "max": 0.05}])
    outcome = run(prometheus.url, "good", spec=spec, names=SeriesNames(requests="not a metric"))
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert "query for requests failed: query error" in outcome.reason


def test_runner_ticks_schedule_runs_write_status_and_emit_events_on_change(
    prometheus: PrometheusServer,
) -> None:
    registry = CollectorRegistry()
    runner = AnalysisRunner(AnalysisMetrics(registry))
    md_spec = {
        "rollout": {
            "analysis": {
                "interval": "5s",
                "window": f"{WINDOW_SECONDS}s",
                "minSamples": 100,
                "failureLimit": 2,
                "prometheus": {"address": prometheus.url},
                "metrics": [{"name": "errorRate", "max": 0.05}],
            }
        }
    }
    status = Status(stable=Track("1", "u1", "errors-v1"), canary=Track("2", "u2", "errors-v2"))
    t0 = datetime.now(UTC)

    async def ticks() -> list[Tick]:
        nonlocal status
        out = []
        try:
            for seconds in (0, 1, 5, 10):  # due, not due yet, due, due
                now = t0 + timedelta(seconds=seconds)
                tick = await runner.tick(NAMESPACE, "errors", md_spec["rollout"]["analysis"], status, now)
                if isinstance(tick.result, AnalysisResult):  # what the planner records
                    status = replace(status, last_analysis=tick.result)
                out.append(tick)
            no_canary = replace(status, canary=None)
            out.append(await runner.tick(NAMESPACE, "errors", md_spec["rollout"]["analysis"], no_canary, t0))
        finally:
            await runner.close()
        return out

    first, early, second, third, no_canary = asyncio.run(ticks())
    assert isinstance(first.result, AnalysisResult)
    assert (first.result.verdict, first.result.verdict_changed) == ("Failed", True)
    assert (first.result.action, first.result.record["consecutiveFailures"]) == ("Hold", 1)
    assert first.retry_in_seconds == 5
    assert (early.outcome, early.result, early.retry_in_seconds) == (None, None, 4.0)
    assert isinstance(second.result, AnalysisResult)
    assert (second.result.action, second.result.record["consecutiveFailures"]) == ("Rollback", 2)
    assert not second.result.verdict_changed  # still Failed: the planner announces nothing new
    assert isinstance(third.result, AnalysisResult)
    assert third.result.record["runs"] == 3
    assert (no_canary.outcome, no_canary.retry_in_seconds) == (None, None)
    assert no_canary.note == "no canary to analyze"
    labels = {"namespace": NAMESPACE, "model_deployment": "errors"}
    assert (
        registry.get_sample_value(
            "mlrollout_analysis_runs_total", {**labels, "verdict": "Failed", "action": "Rollback"}
        )
        == 2
    )


def test_prometheus_down_is_inconclusive_keeps_the_failure_count_and_recovers(
    prometheus: PrometheusServer,
) -> None:
    # Runs last among the tests sharing the module's Prometheus: it takes that Prometheus down.
    before = AnalysisState(consecutive_failures=1, runs=3, last_verdict=Verdict.FAILED)
    prometheus.down()
    try:
        outcome = run(prometheus.url, "good", before)
    finally:
        prometheus.up()
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert set(verdicts(outcome).values()) == {Verdict.INCONCLUSIVE}
    assert f"Prometheus at {prometheus.url} unreachable" in outcome.reason
    assert outcome.action is Action.HOLD
    assert outcome.state.consecutive_failures == 1  # neither reset nor advanced
    assert outcome.verdict_changed
    # Back up with its data: the next run judges on real numbers again.
    prometheus.wait_for_targets(len(CANARIES) * 2, timeout=60)
    runs: list[AnalysisOutcome] = []

    def passes() -> bool:
        runs.append(run(prometheus.url, "good", outcome.state))
        return runs[-1].verdict is Verdict.PASSED

    prometheus.wait_until("analysis passes again after the outage", passes, timeout=60)
    recovered = runs[-1]
    assert recovered.action is Action.PROCEED
    assert recovered.state.consecutive_failures == 0


def test_prometheus_hanging_times_out_as_inconclusive() -> None:
    # A socket that accepts connections (kernel backlog) but never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        spec = spec_for(address, metrics=[{"name": "errorRate", "max": 0.05}])
        outcome = run(address, "good", spec=spec, timeout=0.5)
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert "did not answer within 0.5s" in outcome.reason

"""AnalysisRunner.tick: the one path from an analysis spec to an observation for the planner. It
writes nothing and posts nothing; it records the operator's own metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from mlrollout.operator.analysis.metrics import AnalysisMetrics
from mlrollout.operator.analysis.runner import AnalysisRunner, Tick
from mlrollout.operator.model import AnalysisInvalid, AnalysisResult, Status, Track
from prometheus_client import CollectorRegistry
from support.procs import free_port

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
CANARY = Status(
    stable=Track("1", "u1", "m-v1-aaaaaa", serving_hash="aaaaaa"),
    canary=Track("2", "u2", "m-v2-aaaaaa", serving_hash="aaaaaa"),
    canary_started_at=NOW - timedelta(minutes=1),
)


def raw(address: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"interval": "30s", "metrics": [{"name": "errorRate", "max": 0.01}]}
    if address:
        spec["prometheus"] = {"address": address, "timeoutSeconds": 1}
    return spec


def tick(status: Status, spec: dict[str, Any] | None, registry: CollectorRegistry | None = None) -> Tick:
    async def go() -> Tick:
        runner = AnalysisRunner(AnalysisMetrics(registry or CollectorRegistry()))
        try:
            return await runner.tick("ns", "m", spec, status, NOW)
        finally:
            await runner.close()

    return asyncio.run(go())


def test_nothing_runs_without_a_canary_or_an_analysis_spec() -> None:
    assert tick(Status(stable=CANARY.stable), raw("http://127.0.0.1:9")).result is None
    assert tick(CANARY, None).result is None


def test_an_unreachable_prometheus_is_an_inconclusive_result_about_this_canary_revision() -> None:
    registry = CollectorRegistry()
    out = tick(CANARY, raw(f"http://127.0.0.1:{free_port()}"), registry)
    assert isinstance(out.result, AnalysisResult)
    assert (out.result.verdict, out.result.action) == ("Inconclusive", "Hold")
    assert (out.result.canary_version, out.result.canary_revision) == ("2", "aaaaaa")
    assert out.result.belongs_to(CANARY.canary, CANARY.canary_started_at)
    assert out.result.verdict_changed  # the first run: the planner announces it
    assert out.retry_in_seconds == 30
    labels = {"namespace": "ns", "model_deployment": "m", "verdict": "Inconclusive", "action": "Hold"}
    assert registry.get_sample_value("mlrollout_analysis_runs_total", labels) == 1


def test_an_unusable_spec_is_an_observation_not_an_exception() -> None:
    out = tick(CANARY, raw(None))  # no address, and no operator default
    assert isinstance(out.result, AnalysisInvalid)
    assert "prometheus.address is required" in out.result.message
    assert out.retry_in_seconds is None  # nothing to retry until the spec changes

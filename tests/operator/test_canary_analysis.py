"""When live analysis runs for a canary, and what it hands the planner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from mlrollout.operator.analysis import PrometheusClient
from mlrollout.operator.canary_analysis import run_if_due
from mlrollout.operator.model import AnalysisResult, Status, Track
from support.procs import free_port

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
CANARY = Status(
    stable=Track("1", "u1", "m-v1"),
    canary=Track("2", "u2", "m-v2"),
)


def raw(address: str) -> dict[str, Any]:
    return {
        "interval": "30s",
        "prometheus": {"address": address, "timeoutSeconds": 1},
        "metrics": [{"name": "errorRate", "max": 0.01}],
    }


def run(status: Status, last: dict[str, Any] | None, spec: dict[str, Any] | None) -> Any:
    async def go() -> Any:
        clients: dict[str, PrometheusClient] = {}
        try:
            return await run_if_due(
                "ns", "m", raw_spec=spec, status=status, last_record=last, now=NOW, clients=clients
            )
        finally:
            for c in clients.values():
                await c.close()

    return asyncio.run(go())


def test_nothing_runs_without_a_canary_or_analysis() -> None:
    assert run(Status(stable=Track("1", "u", "d")), None, raw("http://127.0.0.1:9")).record is None
    assert run(CANARY, None, None).record is None


def test_not_due_yet_reports_when() -> None:
    last = {
        "canaryVersion": "2",
        "verdict": "Passed",
        "evaluatedAt": (NOW - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": 1,
    }
    result = run(CANARY, last, raw("http://127.0.0.1:9"))
    assert result.record is None
    assert result.next_in == 20


def test_unreachable_prometheus_is_inconclusive_never_a_pass() -> None:
    result = run(CANARY, None, raw(f"http://127.0.0.1:{free_port()}"))
    assert result.record is not None
    parsed = AnalysisResult.from_dict(result.record)
    assert parsed is not None
    assert parsed.verdict == "Inconclusive"
    assert parsed.canary_version == "2"
    assert not parsed.wants_rollback
    assert result.next_in == 30
    assert result.event is not None
    assert result.event[1] == "AnalysisInconclusive"


def test_every_run_lands_in_the_operators_own_metrics() -> None:
    """Issue 6: each measurement is in status *and* in the operator's Prometheus metrics."""
    from mlrollout.operator.canary_analysis import analysis_metrics
    from prometheus_client import REGISTRY

    labels = {"namespace": "ns", "model_deployment": "m", "verdict": "Inconclusive", "action": "Hold"}
    before = REGISTRY.get_sample_value("mlrollout_analysis_runs_total", labels) or 0.0
    run(CANARY, None, raw(f"http://127.0.0.1:{free_port()}"))
    assert REGISTRY.get_sample_value("mlrollout_analysis_runs_total", labels) == before + 1
    samples = REGISTRY.get_sample_value(
        "mlrollout_analysis_samples", {"namespace": "ns", "model_deployment": "m", "metric": "errorRate"}
    )
    assert samples == 0

    analysis_metrics().forget("ns", "m")
    assert REGISTRY.get_sample_value("mlrollout_analysis_runs_total", labels) is None

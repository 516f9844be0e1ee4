"""Run live canary analysis on its interval while a canary exists (the I/O side of the seam).

The analysis package judges (pure) and queries Prometheus; this module decides *when* to run it
for a ModelDeployment and hands back the new status.lastAnalysis. The planner then reads that
record as an observed input (model.AnalysisResult): Rollback -> roll back at any step; an
analysis step advances only on a Passed verdict taken after the step began.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from mlrollout.operator.analysis import (
    AnalysisSpec,
    AnalysisSpecError,
    AnalysisState,
    AnalysisTarget,
    PrometheusClient,
    analyze,
)
from mlrollout.operator.analysis.metrics import AnalysisMetrics
from mlrollout.operator.model import Status


@cache
def analysis_metrics() -> AnalysisMetrics:
    """One set per process: prometheus_client refuses to register the same names twice."""
    return AnalysisMetrics()


@dataclass(frozen=True)
class AnalysisRun:
    record: dict[str, Any] | None  # new status.lastAnalysis, None when nothing ran
    event: tuple[str, str, str] | None  # (type, reason, message) when the verdict changed
    next_in: float | None  # seconds until the next run is due


def due_in(spec: AnalysisSpec, state: AnalysisState, now: datetime) -> float:
    """Seconds until the next analysis run (0: now)."""
    if state.last_run_at is None:
        return 0.0
    return max(0.0, spec.interval_seconds - (now - state.last_run_at).total_seconds())


async def run_if_due(
    namespace: str,
    name: str,
    *,
    raw_spec: Mapping[str, Any] | None,
    status: Status,
    last_record: Mapping[str, Any] | None,
    now: datetime,
    clients: dict[str, PrometheusClient],
) -> AnalysisRun:
    if raw_spec is None or status.canary is None:
        return AnalysisRun(None, None, None)
    try:
        spec = AnalysisSpec.from_dict(raw_spec, default_prometheus=os.environ.get("MLROLLOUT_PROMETHEUS_URL"))
        state = AnalysisState.from_status(last_record, status.canary.version)
    except (AnalysisSpecError, ValueError) as exc:
        record = {
            "canaryVersion": status.canary.version,
            "verdict": "Inconclusive",
            "message": f"invalid: {exc}",
        }
        return AnalysisRun(record, ("Warning", "AnalysisInvalid", str(exc)), None)
    wait = due_in(spec, state, now)
    if wait > 0:
        return AnalysisRun(None, None, wait)
    client = clients.get(spec.prometheus_address)
    if client is None:
        client = clients[spec.prometheus_address] = PrometheusClient(
            spec.prometheus_address, timeout_seconds=spec.timeout_seconds
        )
    target = AnalysisTarget(
        namespace=namespace,
        model_deployment=name,
        canary_version=status.canary.version,
        stable_version=status.stable.version if status.stable else None,
    )
    outcome = await analyze(client, spec, target, state, now=now)
    analysis_metrics().record(target, outcome)  # every measurement also in the operator's /metrics
    event = outcome.event() if outcome.verdict_changed else None
    return AnalysisRun(outcome.to_status(status.canary.version), event, spec.interval_seconds)

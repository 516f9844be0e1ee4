"""The one path from an analysis spec to an analysis *observation*: decide whether a run is due
(`schedule.next_analysis`, pure), query Prometheus and judge (`analyze`), record the operator's
own metrics, and hand back the result. It writes nothing and posts nothing: the planner decides
whether the result is recorded in status.lastAnalysis and which Events announce it.

One runner per operator process; it pools HTTP connections across ModelDeployments and keeps one
client per Prometheus address.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from mlrollout.operator.model import AnalysisInvalid, AnalysisResult, Status

from .analyze import analyze
from .judge import AnalysisOutcome
from .metrics import AnalysisMetrics
from .prometheus import PrometheusClient
from .promql import DEFAULT_SERIES, SeriesNames
from .schedule import Due, next_analysis


@dataclass(frozen=True)
class Tick:
    """What one look produced: a fresh `result` (or why the spec is unusable), when to look again
    (`retry_in_seconds`, None: on change) and a note for logs."""

    outcome: AnalysisOutcome | None
    result: AnalysisResult | AnalysisInvalid | None
    retry_in_seconds: float | None
    note: str


def to_result(outcome: AnalysisOutcome, canary_version: str, canary_revision: str) -> AnalysisResult:
    """The outcome as the typed status.lastAnalysis record (pure)."""
    record = {**outcome.to_status(canary_version), "canaryRevision": canary_revision or None}
    result = AnalysisResult.from_dict(record)
    assert result is not None  # to_status always writes a verdict and evaluatedAt
    return AnalysisResult(
        verdict=result.verdict,
        canary_version=result.canary_version,
        evaluated_at=result.evaluated_at,
        message=result.message,
        action=result.action,
        canary_revision=result.canary_revision,
        record=result.record,
        verdict_changed=outcome.verdict_changed,
    )


class AnalysisRunner:
    def __init__(
        self,
        metrics: AnalysisMetrics | None = None,
        *,
        default_prometheus: str | None = None,
        names: SeriesNames = DEFAULT_SERIES,
    ) -> None:
        self.metrics = metrics
        self.default_prometheus = default_prometheus
        self.names = names
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[tuple[str, float], PrometheusClient] = {}

    def _client(self, address: str, timeout_seconds: float) -> PrometheusClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        key = (address, timeout_seconds)
        if key not in self._clients:
            self._clients[key] = PrometheusClient(
                address, timeout_seconds=timeout_seconds, session=self._session
            )
        return self._clients[key]

    async def tick(
        self,
        namespace: str,
        name: str,
        raw: Mapping[str, Any] | None,
        status: Status,
        now: datetime,
        *,
        shadow: bool = False,
    ) -> Tick:
        """Never raises for Prometheus trouble (that is an Inconclusive result) nor for a bad spec
        (that is an AnalysisInvalid result). `shadow`: the canary is on a shadow step."""
        due = next_analysis(
            namespace, name, raw, status, now, default_prometheus=self.default_prometheus, shadow=shadow
        )
        if isinstance(due, AnalysisInvalid):
            return Tick(None, due, None, f"invalid analysis spec: {due.message}")
        if not isinstance(due, Due):
            return Tick(None, None, due.retry_in_seconds, due.reason)
        client = self._client(due.spec.prometheus_address, due.spec.timeout_seconds)
        outcome = await analyze(client, due.spec, due.target, due.state, now=now, names=self.names)
        if self.metrics is not None:
            self.metrics.record(due.target, outcome)
        version = due.target.canary_version or ""
        return Tick(
            outcome=outcome,
            result=to_result(outcome, version, due.canary_revision),
            retry_in_seconds=due.spec.interval_seconds,
            note=f"analysis of canary {version}: {outcome.verdict.value}, {outcome.action.value}",
        )

    def forget(self, namespace: str, name: str) -> None:
        """A ModelDeployment was deleted: drop its metric series."""
        if self.metrics is not None:
            self.metrics.forget(namespace, name)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._clients.clear()

"""The glue an analysis timer needs, without kopf: decide whether a run is due, run it, and say what to
write to status and which Event to emit. One runner per operator process; it pools HTTP connections
across ModelDeployments and keeps one client per Prometheus address.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from .analyze import analyze
from .judge import AnalysisOutcome
from .metrics import AnalysisMetrics
from .prometheus import PrometheusClient
from .promql import DEFAULT_SERIES, SeriesNames
from .schedule import Due, next_analysis


@dataclass(frozen=True)
class Tick:
    """What one timer tick produced. Write `last_analysis` to status.lastAnalysis when set; emit
    `event` (type, reason, message) when set; come back after `retry_in_seconds` (None: on change)."""

    outcome: AnalysisOutcome | None
    last_analysis: dict[str, Any] | None
    event: tuple[str, str, str] | None
    retry_in_seconds: float | None
    note: str


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
        spec: Mapping[str, Any],
        status: Mapping[str, Any] | None,
        now: datetime,
    ) -> Tick:
        """Raises AnalysisSpecError for an invalid spec.rollout.analysis; never for Prometheus trouble."""
        due = next_analysis(namespace, name, spec, status, now, default_prometheus=self.default_prometheus)
        if not isinstance(due, Due):
            return Tick(None, None, None, due.retry_in_seconds, due.reason)
        client = self._client(due.spec.prometheus_address, due.spec.timeout_seconds)
        outcome = await analyze(client, due.spec, due.target, due.state, now=now, names=self.names)
        if self.metrics is not None:
            self.metrics.record(due.target, outcome)
        canary_version = due.target.canary_version or ""
        return Tick(
            outcome=outcome,
            last_analysis=outcome.to_status(canary_version),
            event=outcome.event() if outcome.verdict_changed else None,
            retry_in_seconds=due.spec.interval_seconds,
            note=f"analysis of canary {canary_version}: {outcome.verdict.value}, {outcome.action.value}",
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

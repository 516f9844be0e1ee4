"""Whether a ModelDeployment needs an analysis run now, read from its spec and status (pure).

The analysis timer calls `next_analysis` on every tick; only a `Due` answer costs Prometheus queries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .promql import AnalysisTarget
from .spec import AnalysisSpec
from .state import AnalysisState


@dataclass(frozen=True)
class Due:
    spec: AnalysisSpec
    target: AnalysisTarget
    state: AnalysisState  # continue from this; write outcome.to_status(target.canary_version) back


@dataclass(frozen=True)
class NotDue:
    reason: str
    retry_in_seconds: float | None  # None: nothing to analyze until spec or status changes


def next_analysis(
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    now: datetime,
    *,
    default_prometheus: str | None = None,
) -> Due | NotDue:
    """Due when analysis is configured, a canary exists and the interval since the last run of this
    canary version has passed. Raises AnalysisSpecError for an invalid spec.rollout.analysis."""
    raw = (spec.get("rollout") or {}).get("analysis")
    if not raw:
        return NotDue("spec.rollout.analysis is not set", None)
    analysis = AnalysisSpec.from_dict(raw, default_prometheus=default_prometheus)
    status = status or {}
    canary_version = _version(status.get("canary"))
    if canary_version is None:
        return NotDue("no canary to analyze", None)
    state = AnalysisState.from_status(status.get("lastAnalysis"), canary_version)
    due_at = state.next_due(analysis.interval_seconds)
    if due_at is not None and now < due_at:
        wait = (due_at - now).total_seconds()
        return NotDue(f"next analysis of canary {canary_version} in {wait:.1f}s", wait)
    target = AnalysisTarget(
        namespace, name, canary_version=canary_version, stable_version=_version(status.get("stable"))
    )
    return Due(analysis, target, state)


def _version(track: object) -> str | None:
    if isinstance(track, Mapping) and track.get("version"):
        return str(track["version"])
    return None

"""Whether a ModelDeployment needs an analysis run now, from its spec and typed status (pure).

The operator asks `next_analysis` on every reconcile; only a `Due` answer costs Prometheus queries.
The state a run continues from is the latest result *about the current canary revision taken since
it started*; anything else (another version, the same version before a serving change, a retry of a
rolled-back version) starts clean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mlrollout.operator.model import AnalysisInvalid, Status

from .promql import AnalysisTarget
from .spec import AnalysisSpec, AnalysisSpecError, applies
from .state import AnalysisState


@dataclass(frozen=True)
class Due:
    spec: AnalysisSpec
    target: AnalysisTarget
    state: AnalysisState  # continue from this
    canary_revision: str = ""


@dataclass(frozen=True)
class NotDue:
    reason: str
    retry_in_seconds: float | None  # None: nothing to analyze until spec or status changes


def parse(
    raw: Mapping[str, Any] | None, default_prometheus: str | None
) -> AnalysisSpec | AnalysisInvalid | None:
    """spec.rollout.analysis as a spec, or why it cannot be used, or None when not configured."""
    if raw is None:
        return None
    try:
        return AnalysisSpec.from_dict(raw, default_prometheus=default_prometheus)
    except AnalysisSpecError as exc:
        return AnalysisInvalid(str(exc))


def next_analysis(
    namespace: str,
    name: str,
    raw: Mapping[str, Any] | None,
    status: Status,
    now: datetime,
    *,
    default_prometheus: str | None = None,
    shadow: bool = False,
) -> Due | NotDue | AnalysisInvalid:
    """Due when analysis is configured and valid, a canary exists and the interval since the last
    run about this canary revision has passed. `shadow`: the canary is on a shadow step (only the
    metrics that apply there are measured, on the stable pods' copies to it)."""
    spec = parse(raw, default_prometheus)
    if spec is None:
        return NotDue("spec.rollout.analysis is not set", None)
    if isinstance(spec, AnalysisInvalid):
        return spec
    canary = status.canary
    if canary is None:
        return NotDue("no canary to analyze", None)
    last = status.last_analysis
    own = last if last is not None and last.belongs_to(canary, status.canary_started_at) else None
    try:
        state = AnalysisState.from_status(own.record if own else None, canary.version)
    except ValueError:
        state = AnalysisState()  # an unreadable record is not about this canary: start clean
    due_at = state.next_due(spec.interval_seconds)
    if due_at is not None and now < due_at:
        wait = (due_at - now).total_seconds()
        return NotDue(f"next analysis of canary {canary.version} in {wait:.1f}s", wait)
    metrics = tuple(m for m in spec.metrics if applies(m.kind, shadow=shadow))
    if not metrics:
        where = "during a shadow step" if shadow else "outside shadow steps"
        return NotDue(f"no metric of spec.rollout.analysis is measured {where}", spec.interval_seconds)
    target = AnalysisTarget(
        namespace,
        name,
        canary_version=canary.version,
        stable_version=status.stable.version if status.stable else None,
        shadow=shadow,
    )
    return Due(replace(spec, metrics=metrics), target, state, canary.serving_hash)

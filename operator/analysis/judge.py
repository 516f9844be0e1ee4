"""Combining measurements into one verdict and deciding what the rollout should do about it.

Verdict of a run: any metric Failed -> Failed (a definite failure outweighs missing data elsewhere);
else any Inconclusive -> Inconclusive; else Passed.

Action, with the state carried between runs:
- Passed: PROCEED (an analysis step may advance); both streaks reset.
- Failed: one more consecutive failure; ROLLBACK once failureLimit is reached, else HOLD.
- Inconclusive, by policy: hold -> HOLD, the failure streak untouched (a Prometheus outage between two
  failures must not reset the countdown to rollback); extend -> HOLD for up to inconclusiveLimit
  consecutive runs, after which each counts as a failure; fail -> counts as a failure at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .measurement import Measurement, Verdict
from .spec import AnalysisSpec, InconclusivePolicy
from .state import AnalysisState


class Action(StrEnum):
    PROCEED = "Proceed"  # analysis passed: an analysis step may advance
    HOLD = "Hold"  # stay on the current step, measure again next interval
    ROLLBACK = "Rollback"  # failureLimit reached: abort the canary


@dataclass(frozen=True)
class AnalysisOutcome:
    verdict: Verdict
    action: Action
    reason: str
    measurements: tuple[Measurement, ...]
    state: AnalysisState  # the state to write back to status.analysis
    previous_verdict: Verdict | None

    @property
    def verdict_changed(self) -> bool:
        """True when an Event should be emitted (first run included)."""
        return self.verdict is not self.previous_verdict

    def event(self) -> tuple[str, str, str]:
        """(type, reason, message) for a Kubernetes Event."""
        kind = "Normal" if self.verdict is Verdict.PASSED else "Warning"
        return kind, f"Analysis{self.verdict.value}", self.reason

    def to_status(self, canary_version: str) -> dict[str, Any]:
        """status.lastAnalysis: this run's verdict, the action, every measurement, and the state the
        next run continues from (read back with AnalysisState.from_status(..., canary_version))."""
        return {
            "canaryVersion": canary_version,
            **self.state.to_status(),
            "action": self.action.value,
            "message": self.reason,
            "metrics": {m.metric.value: m.to_status() for m in self.measurements},
        }


def combine(measurements: Sequence[Measurement]) -> tuple[Verdict, str]:
    if not measurements:
        raise ValueError("cannot judge an analysis without measurements")
    for verdict in (Verdict.FAILED, Verdict.INCONCLUSIVE):
        hits = [m.reason for m in measurements if m.verdict is verdict]
        if hits:
            return verdict, "; ".join(hits)
    return Verdict.PASSED, "; ".join(m.reason for m in measurements)


def judge(
    spec: AnalysisSpec, measurements: Sequence[Measurement], state: AnalysisState, now: datetime
) -> AnalysisOutcome:
    verdict, reason = combine(measurements)
    failures, inconclusive = state.consecutive_failures, state.consecutive_inconclusive
    if verdict is Verdict.PASSED:
        failures, inconclusive, action = 0, 0, Action.PROCEED
    else:
        counts_as_failure = verdict is Verdict.FAILED
        if verdict is Verdict.FAILED:
            inconclusive = 0
        else:
            inconclusive += 1
            policy = spec.inconclusive_policy
            counts_as_failure = policy is InconclusivePolicy.FAIL or (
                policy is InconclusivePolicy.EXTEND and inconclusive > spec.inconclusive_limit
            )
            if counts_as_failure:
                reason += f" (inconclusive counted as a failure: policy {policy.value})"
        if counts_as_failure:
            failures += 1
            reason += f"; failure {failures} of {spec.failure_limit}"
        action = Action.ROLLBACK if failures >= spec.failure_limit else Action.HOLD
    new_state = AnalysisState(
        consecutive_failures=failures,
        consecutive_inconclusive=inconclusive,
        runs=state.runs + 1,
        last_verdict=verdict,
        last_run_at=now,
    )
    return AnalysisOutcome(
        verdict=verdict,
        action=action,
        reason=reason,
        measurements=tuple(measurements),
        state=new_state,
        previous_verdict=state.last_verdict,
    )

"""The rollout's outcome as two conditions shaped for `kubectl wait`, derived from the pass' final
status (they decide nothing; steps.py and history.py did):

- `Promoted`: True when the spec's target revision is stable with all its pods Ready; False when
  the rollout of the target ended without it (RolledBack, Rejected by the gate, Degraded, or the
  registry says the target does not exist); Unknown while in flight (resolving, canary
  progressing or paused, stable pods coming up).
- `Settled`: True when the rollout of this spec ended either way (same reason as `Promoted`);
  False while in flight.

`kubectl wait --for=condition=Promoted md/NAME` returns once the target is promoted;
`--for=condition=Settled` returns on either outcome (then read `Promoted`). Both are about the
current spec: status.observedGeneration is written in the same status patch, and kubectl wait
ignores conditions while `status.observedGeneration < metadata.generation`, so a `kubectl apply` of
a new version never sees the previous rollout's `Promoted=True`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlrollout.operator.model import RegistryFailure, Resolution, Status
from mlrollout.operator.planner.work import Work
from mlrollout.operator.spec import Spec

PROMOTED = "Promoted"
SETTLED = "Settled"
Tri = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Outcome:
    """Both conditions' status and their shared reason and message."""

    promoted: Tri
    reason: str
    message: str

    @property
    def settled(self) -> bool:
        return self.promoted != "Unknown"


def judge(spec: Spec, status: Status, target: Resolution | None, failure: RegistryFailure | None) -> Outcome:
    """The outcome of rolling out `spec` given the status this pass ends with. `target` is the
    registry's answer for spec.model this pass (None when it did not answer); the last answer in
    status.resolved counts when it is about the same request (an alias refresh that failed)."""
    resolved = status.resolved
    known = target or (resolved if resolved is not None and resolved.request == spec.model.request else None)
    if known is None:
        if failure is not None and not failure.temporary:
            return Outcome("False", failure.reason, failure.message)
        if failure is not None:
            return Outcome("Unknown", failure.reason, f"waiting for the registry: {failure.message}")
        return Outcome("Unknown", "Resolving", f"resolving {spec.model.request} in the registry")
    if status.canary is not None:
        return Outcome("Unknown", status.phase, status.message)
    abandoned = status.abandoned
    if (
        status.phase in ("Rejected", "RolledBack")
        and abandoned is not None
        and abandoned.version == known.version
    ):
        return Outcome("False", status.phase, status.message or abandoned.message)
    if status.phase == "Degraded":
        return Outcome("False", "Degraded", status.message)
    stable = status.stable
    on_target = (
        stable is not None
        and stable.version == known.version
        and stable.serving_hash == spec.serving.template_hash
    )
    if on_target and status.phase == "Promoted":
        return Outcome("True", "RolloutComplete", status.message)
    return Outcome("Unknown", status.phase, status.message)


def record(w: Work, target: Resolution | None) -> None:
    """Set `Promoted` and `Settled` from the status this pass decided."""
    failure = w.obs.registry if isinstance(w.obs.registry, RegistryFailure) else None
    out = judge(w.spec, w.status, target, failure)
    promoted = None if out.promoted == "Unknown" else out.promoted == "True"
    w.cond(PROMOTED, promoted, out.reason, out.message)
    w.cond(SETTLED, out.settled, out.reason, out.message)

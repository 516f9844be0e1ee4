"""The offline gate: a version's metric on its source run against the spec's floor and, when a
stable version exists, against stable minus maxRegression. Decided once per target; announced only
when the verdict or its numbers change."""

from __future__ import annotations

from mlrollout.operator.model import Abandoned, Resolution
from mlrollout.operator.planner.work import Work
from mlrollout.operator.spec import Gate


def judge_gate(gate: Gate, target: Resolution, baseline: float | None) -> tuple[bool, str]:
    """(passed, why) with the numbers; pure."""
    value = target.gate_value
    if value is None:
        return False, f"metric {gate.metric} is missing on run {target.run_id} of version {target.version}"
    if value < gate.threshold:
        return False, f"{gate.metric} {value:.4f} < threshold {gate.threshold:.4f} (version {target.version})"
    if gate.max_regression is not None and baseline is not None and value < baseline - gate.max_regression:
        return False, (
            f"{gate.metric} {value:.4f} regresses more than {gate.max_regression:.4f} below stable "
            f"{baseline:.4f} (version {target.version})"
        )
    floor = (
        f" and stable {baseline:.4f} - {gate.max_regression:.4f}"
        if (gate.max_regression is not None and baseline is not None)
        else ""
    )
    return (
        True,
        f"{gate.metric} {value:.4f} >= threshold {gate.threshold:.4f}{floor} (version {target.version})",
    )


def gate(w: Work, target: Resolution, baseline: float | None) -> bool:
    """Judge the target, record GatePassed, and on failure mark it Rejected (tag `rejected`)."""
    ok, why = judge_gate(w.spec.gate, target, baseline)
    before = w.status.condition("GatePassed")
    w.cond("GatePassed", ok, "GatePassed" if ok else "GateFailed", why)
    announce = before is None or before.message != why or before.status != ("True" if ok else "False")
    if ok:
        if announce or w.status.abandoned is not None:
            w.event("Normal", "GatePassed", why)
        return True
    w.update(abandoned=Abandoned(target.version, "GateFailed", why, w.spec.serving.template_hash))
    w.phase("Rejected", why)
    if announce:
        w.event("Warning", "GateFailed", why)
        w.tag(target.version, "rejected")
    return False


def is_abandoned(w: Work, target: Resolution) -> bool:
    """A rolled-back revision stays down until the target changes. A gate rejection is re-judged
    every pass instead (cheap: the metric is cached in status.resolved), so relaxing the gate in
    the spec takes effect."""
    ab = w.status.abandoned
    return (
        ab is not None
        and ab.reason != "GateFailed"
        and ab.version == target.version
        and ab.serving_hash == w.spec.serving.template_hash
    )

"""The offline gate: a version's metric on its source run against the spec's floor and, when a
stable version exists, against stable minus maxRegression. Decided once per target; announced only
when the verdict or its numbers change."""

from __future__ import annotations

from mlrollout.operator.model import Abandoned, Resolution
from mlrollout.operator.planner.work import Work
from mlrollout.operator.spec import Gate


def judge_gate(gate: Gate, target: Resolution, baseline: float | None) -> tuple[bool, str]:
    """(passed, why) with the numbers; pure. The direction says whether the threshold is a floor
    (higherIsBetter: F1, accuracy) or a ceiling (lowerIsBetter: RMSE, log loss), and whether
    maxRegression bounds a drop below stable or a rise above it."""
    value = target.gate_value
    version = f"(version {target.version})"
    if value is None:
        return False, f"metric {gate.metric} is missing on run {target.run_id} of version {target.version}"
    lower = gate.lower_is_better

    def worse(a: float, b: float) -> bool:
        return a > b if lower else a < b

    if worse(value, gate.threshold):
        op = ">" if lower else "<"
        return False, f"{gate.metric} {value:.4f} {op} threshold {gate.threshold:.4f} {version}"
    bound = ""
    if gate.max_regression is not None and baseline is not None:
        relative = baseline + gate.max_regression if lower else baseline - gate.max_regression
        if worse(value, relative):
            how = "rises more than {:.4f} above" if lower else "regresses more than {:.4f} below"
            return False, (
                f"{gate.metric} {value:.4f} {how.format(gate.max_regression)} stable {baseline:.4f} {version}"
            )
        bound = f" and stable {baseline:.4f} {'+' if lower else '-'} {gate.max_regression:.4f}"
    op = "<=" if lower else ">="
    return True, f"{gate.metric} {value:.4f} {op} threshold {gate.threshold:.4f}{bound} {version}"


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

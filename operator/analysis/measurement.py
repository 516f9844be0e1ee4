"""Judging one metric: a canary reading (and a stable one, for relative thresholds and drift)
against its spec gives a Measurement with a verdict and a reason a person can read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .spec import Direction, MetricKind, MetricSpec


class Verdict(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"  # not enough trustworthy data: never treated as a pass


@dataclass(frozen=True)
class Reading:
    """One track's value of one metric over the window.

    `value` is None when it cannot be computed (no samples); `problem` says why the data is
    unusable (query failed, series missing) and makes the measurement Inconclusive.
    """

    value: float | None
    samples: int
    problem: str | None = None
    detail: str | None = None  # what the verdict's reason should name (e.g. inputDrift's worst feature)


UNITS: dict[MetricKind, str] = {
    MetricKind.ERROR_RATE: "requests",
    MetricKind.LATENCY_P99_MS: "requests",
    MetricKind.LIVE_F1: "feedback labels",
    MetricKind.PREDICTION_DRIFT: "predictions",
    MetricKind.LIVE_RMSE: "feedback labels",
    MetricKind.LIVE_MAE: "feedback labels",
    MetricKind.INPUT_DRIFT: "rows",
    MetricKind.AGREEMENT: "rows compared",
}


@dataclass(frozen=True)
class Measurement:
    metric: MetricKind
    verdict: Verdict
    value: float | None  # canary value
    threshold: float  # effective threshold: the stricter of absolute and stable-relative
    direction: Direction
    samples: int  # canary samples behind the value
    reason: str
    stable_value: float | None = None

    def to_status(self) -> dict[str, Any]:
        """JSON-safe (no NaN/inf: Kubernetes rejects them) summary for status.lastAnalysis."""
        return {
            "value": _json_number(self.value),
            "stableValue": _json_number(self.stable_value),
            "threshold": _json_number(self.threshold),
            "direction": self.direction.value,
            "samples": self.samples,
            "verdict": self.verdict.value,
            "reason": self.reason,
        }


def measure(spec: MetricSpec, canary: Reading, stable: Reading, min_samples: int) -> Measurement:
    """Verdict for one metric. Missing or thin data is Inconclusive with the reason, never a pass."""
    unit = UNITS[spec.kind]
    stable_value = stable.value if stable.problem is None and stable.value is not None else None

    def result(verdict: Verdict, reason: str, threshold: float = spec.threshold) -> Measurement:
        return Measurement(
            metric=spec.kind,
            verdict=verdict,
            value=canary.value,
            threshold=threshold,
            direction=spec.direction,
            samples=canary.samples,
            reason=reason,
            stable_value=stable_value,
        )

    if canary.problem is not None:
        return result(Verdict.INCONCLUSIVE, f"{spec.kind}: {canary.problem}")
    if canary.samples < min_samples:
        return result(
            Verdict.INCONCLUSIVE,
            f"{spec.kind}: canary has {canary.samples} {unit}, below minSamples {min_samples}",
        )
    needs_stable = spec.max_regression is not None or spec.kind is MetricKind.PREDICTION_DRIFT
    threshold, basis = spec.threshold, "absolute"
    if needs_stable:
        if stable.problem is not None:
            return result(Verdict.INCONCLUSIVE, f"{spec.kind}: {stable.problem}")
        if stable.samples < min_samples:
            return result(
                Verdict.INCONCLUSIVE,
                f"{spec.kind}: stable has {stable.samples} {unit}, below minSamples {min_samples}",
            )
    if canary.value is None or math.isnan(canary.value):
        return result(Verdict.INCONCLUSIVE, f"{spec.kind}: no canary value despite {canary.samples} {unit}")
    if spec.max_regression is not None:
        if stable_value is None or math.isnan(stable_value):
            return result(Verdict.INCONCLUSIVE, f"{spec.kind}: no stable value to compare with")
        if spec.direction is Direction.AT_MOST:
            relative = stable_value + spec.max_regression
            if relative < threshold:
                threshold = relative
                basis = f"stable {_fmt(stable_value)} + maxRegression {_fmt(spec.max_regression)}"
        else:
            relative = stable_value - spec.max_regression
            if relative > threshold:
                threshold = relative
                basis = f"stable {_fmt(stable_value)} - maxRegression {_fmt(spec.max_regression)}"

    value = canary.value
    passed = spec.direction.holds(value, threshold)
    op = spec.direction.value if passed else _negate(spec.direction)
    detail = f"; {canary.detail}" if canary.detail else ""
    reason = f"{spec.kind} {_fmt(value)} {op} {_fmt(threshold)} ({basis}; {canary.samples} {unit}{detail})"
    return result(Verdict.PASSED if passed else Verdict.FAILED, reason, threshold)


def _negate(direction: Direction) -> str:
    return ">" if direction is Direction.AT_MOST else "<"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _json_number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None

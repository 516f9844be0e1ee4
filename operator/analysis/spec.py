"""What to measure and how to judge it: the analysis part of a ModelDeployment spec, validated.

`AnalysisSpec.from_dict` reads `spec.rollout.analysis` (camelCase, as in the CRD) and raises
`AnalysisSpecError` naming the field and the problem, so the operator can turn bad input into a
PermanentError with a message the user can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

FIELD_PREFIX = "spec.rollout.analysis"


class AnalysisSpecError(ValueError):
    """The analysis spec is invalid; the message names the field."""


class MetricKind(StrEnum):
    ERROR_RATE = "errorRate"
    LATENCY_P99_MS = "latencyP99Ms"
    LIVE_F1 = "liveF1"
    PREDICTION_DRIFT = "predictionDrift"
    LIVE_RMSE = "liveRMSE"  # regressors: root mean squared error of predictions against /feedback labels
    LIVE_MAE = "liveMAE"  # regressors: mean absolute error, the same way
    INPUT_DRIFT = "inputDrift"  # PSI of live inputs vs the version's training profile, worst feature
    AGREEMENT = "agreement"  # shadow steps: share of rows where the canary's prediction equals stable's


class Direction(StrEnum):
    AT_MOST = "<="
    AT_LEAST = ">="

    def holds(self, value: float, threshold: float) -> bool:
        return value <= threshold if self is Direction.AT_MOST else value >= threshold


# Direction is a property of the metric, not a user choice: "errorRate >= 0.5" is never what anyone means.
DIRECTIONS: Mapping[MetricKind, Direction] = {
    MetricKind.ERROR_RATE: Direction.AT_MOST,
    MetricKind.LATENCY_P99_MS: Direction.AT_MOST,
    MetricKind.LIVE_F1: Direction.AT_LEAST,
    MetricKind.PREDICTION_DRIFT: Direction.AT_MOST,
    MetricKind.LIVE_RMSE: Direction.AT_MOST,
    MetricKind.LIVE_MAE: Direction.AT_MOST,
    MetricKind.INPUT_DRIFT: Direction.AT_MOST,
    MetricKind.AGREEMENT: Direction.AT_LEAST,
}


# The bound's key says the direction, as in the CRD: lower-is-better metrics take max, F1 takes min.
BOUND_KEYS: Mapping[Direction, str] = {Direction.AT_MOST: "max", Direction.AT_LEAST: "min"}

# During a shadow step the canary answers only the stable pods' copies: agreement, and its error rate
# and latency on those copies, are measured; outside one, agreement has nothing to measure. The other
# metrics need users' traffic or labels the canary does not get while in shadow.
SHADOW_METRICS = frozenset({MetricKind.AGREEMENT, MetricKind.ERROR_RATE, MetricKind.LATENCY_P99_MS})


def applies(kind: MetricKind, *, shadow: bool) -> bool:
    """Whether a metric is measured in this phase of the rollout (a shadow step or not)."""
    return kind in SHADOW_METRICS if shadow else kind is not MetricKind.AGREEMENT


class InconclusivePolicy(StrEnum):
    HOLD = "hold"  # stay on the step and measure again, for as long as it takes
    EXTEND = "extend"  # measure again up to inconclusiveLimit times, then count as failures
    FAIL = "fail"  # an inconclusive run counts as a failure straight away


class ClientErrors(StrEnum):
    """Whether errorRate counts 4xx answers (it always counts 5xx)."""

    EXCESS = "excess"  # default: the canary's 4xx share above stable's plus a margin (a canary refusing
    #                    everyone fails; clients' bad input, refused by both tracks alike, does not count)
    ALL = "all"  # every 4xx is an error, on both tracks
    IGNORE = "ignore"  # 5xx only


@dataclass(frozen=True)
class MetricSpec:
    """One metric: the canary value must satisfy `threshold` (the CRD's `max`, or `min` for liveF1)
    and, if set, `max_regression`: worse than stable by at most this much, in the metric's unit."""

    kind: MetricKind
    threshold: float
    max_regression: float | None = None
    min_samples: int | None = None  # overrides AnalysisSpec.min_samples for this metric
    client_errors: ClientErrors = ClientErrors.EXCESS  # errorRate only
    client_error_margin: float = 0.05  # excess: 4xx share above stable's tolerated as noise

    @property
    def direction(self) -> Direction:
        return DIRECTIONS[self.kind]

    def __post_init__(self) -> None:
        where = f"metrics[{self.kind}]"
        bound = f"{where}.{BOUND_KEYS[self.direction]}"
        _check_finite(self.threshold, bound)
        if self.threshold < 0:
            raise AnalysisSpecError(f"{bound} must be >= 0, got {self.threshold}")
        if (
            self.kind in (MetricKind.ERROR_RATE, MetricKind.LIVE_F1, MetricKind.AGREEMENT)
            and self.threshold > 1
        ):
            raise AnalysisSpecError(f"{bound} is a fraction in [0, 1], got {self.threshold}")
        if self.max_regression is not None:
            if self.kind is MetricKind.PREDICTION_DRIFT:
                # Drift already compares canary with stable; a stable-relative drift has no meaning.
                raise AnalysisSpecError(
                    f"{where}.maxRegression is not allowed: drift is already canary vs stable"
                )
            if self.kind is MetricKind.AGREEMENT:
                raise AnalysisSpecError(
                    f"{where}.maxRegression is not allowed: agreement is already canary vs stable"
                )
            if self.kind is MetricKind.INPUT_DRIFT:
                raise AnalysisSpecError(
                    f"{where}.maxRegression is not allowed: input drift compares with the training profile"
                )
            _check_finite(self.max_regression, f"{where}.maxRegression")
            if self.max_regression < 0:
                raise AnalysisSpecError(f"{where}.maxRegression must be >= 0, got {self.max_regression}")
        if self.min_samples is not None and self.min_samples < 1:
            raise AnalysisSpecError(f"{where}.minSamples must be >= 1, got {self.min_samples}")
        if self.kind is not MetricKind.ERROR_RATE and self.client_errors is not ClientErrors.EXCESS:
            raise AnalysisSpecError(f"{where}.clientErrors only applies to errorRate")
        _check_finite(self.client_error_margin, f"{where}.clientErrorMargin")
        if not 0 <= self.client_error_margin <= 1:
            raise AnalysisSpecError(f"{where}.clientErrorMargin is a fraction in [0, 1]")


@dataclass(frozen=True)
class AnalysisSpec:
    metrics: tuple[MetricSpec, ...]
    interval_seconds: float = 30.0
    # PromQL range window. from_dict defaults it to max(interval, 60s) so even a 30s scrape
    # interval leaves rate() two points to work with.
    window_seconds: float = 60.0
    min_samples: int = 100
    failure_limit: int = 2
    inconclusive_policy: InconclusivePolicy = InconclusivePolicy.HOLD
    inconclusive_limit: int = 3
    prometheus_address: str = "http://prometheus:9090"
    timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not self.metrics:
            raise AnalysisSpecError(
                "metrics must list at least one metric: an analysis of nothing would always pass"
            )
        kinds = [m.kind for m in self.metrics]
        dupes = sorted({k for k in kinds if kinds.count(k) > 1})
        if dupes:
            raise AnalysisSpecError(f"metrics lists {', '.join(dupes)} more than once")
        for name, value in (
            ("interval", self.interval_seconds),
            ("window", self.window_seconds),
            ("prometheus.timeoutSeconds", self.timeout_seconds),
        ):
            _check_finite(value, name)
            if value <= 0:
                raise AnalysisSpecError(f"{name} must be > 0, got {value}")
        if self.min_samples < 1:
            raise AnalysisSpecError(f"minSamples must be >= 1, got {self.min_samples}")
        if self.failure_limit < 1:
            raise AnalysisSpecError(f"failureLimit must be >= 1, got {self.failure_limit}")
        if self.inconclusive_limit < 0:
            raise AnalysisSpecError(f"inconclusiveLimit must be >= 0, got {self.inconclusive_limit}")
        if not re.match(r"^https?://[^\s/]+", self.prometheus_address):
            raise AnalysisSpecError(
                "prometheus.address must be an http(s) URL like http://prometheus:9090, "
                f"got {self.prometheus_address!r}"
            )

    def min_samples_for(self, metric: MetricSpec) -> int:
        return metric.min_samples if metric.min_samples is not None else self.min_samples

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, default_prometheus: str | None = None) -> AnalysisSpec:
        """Read `spec.rollout.analysis`. Example:

        interval: 30s, window: 2m, minSamples: 100, failureLimit: 2,
        inconclusivePolicy: hold, inconclusiveLimit: 3,
        prometheus: {address: http://prometheus:9090, timeoutSeconds: 5},
        metrics: [{name: errorRate, max: 0.01},
                  {name: latencyP99Ms, max: 200, maxRegression: 50},
                  {name: liveF1, min: 0.8, maxRegression: 0.05, minSamples: 30},
                  {name: predictionDrift, max: 0.2}]
        """
        try:
            return cls._from_dict(raw, default_prometheus)
        except AnalysisSpecError as exc:
            message = str(exc)
            if not message.startswith(FIELD_PREFIX):
                message = f"{FIELD_PREFIX}.{message}"
            raise AnalysisSpecError(message) from None

    @classmethod
    def _from_dict(cls, raw: Mapping[str, Any], default_prometheus: str | None) -> AnalysisSpec:
        if not isinstance(raw, Mapping):
            raise AnalysisSpecError(f"{FIELD_PREFIX} must be an object, got {type(raw).__name__}")
        known = {
            "interval",
            "window",
            "minSamples",
            "failureLimit",
            "inconclusivePolicy",
            "inconclusiveLimit",
            "prometheus",
            "metrics",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise AnalysisSpecError(
                f"{FIELD_PREFIX} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        interval = parse_duration(raw.get("interval", "30s"), "interval")
        window = parse_duration(raw["window"], "window") if "window" in raw else max(interval, 60.0)
        prom = raw.get("prometheus") or {}
        if not isinstance(prom, Mapping):
            raise AnalysisSpecError("prometheus must be an object like {address: http://prometheus:9090}")
        address = prom.get("address") or default_prometheus
        if not address:
            raise AnalysisSpecError("prometheus.address is required (no operator default configured)")
        policy_raw = raw.get("inconclusivePolicy", InconclusivePolicy.HOLD.value)
        try:
            policy = InconclusivePolicy(policy_raw)
        except ValueError:
            choices = ", ".join(p.value for p in InconclusivePolicy)
            raise AnalysisSpecError(
                f"inconclusivePolicy must be one of {choices}, got {policy_raw!r}"
            ) from None
        metrics_raw = raw.get("metrics")
        if not isinstance(metrics_raw, list):
            raise AnalysisSpecError("metrics must be a list like [{name: errorRate, max: 0.01}]")
        return cls(
            metrics=tuple(_metric_from_dict(m, i) for i, m in enumerate(metrics_raw)),
            interval_seconds=interval,
            window_seconds=window,
            min_samples=_int(raw.get("minSamples", 100), "minSamples"),
            failure_limit=_int(raw.get("failureLimit", 2), "failureLimit"),
            inconclusive_policy=policy,
            inconclusive_limit=_int(raw.get("inconclusiveLimit", 3), "inconclusiveLimit"),
            prometheus_address=str(address).rstrip("/"),
            timeout_seconds=_number(prom.get("timeoutSeconds", 5), "prometheus.timeoutSeconds"),
        )


def _metric_from_dict(raw: object, index: int) -> MetricSpec:
    where = f"metrics[{index}]"
    if not isinstance(raw, Mapping):
        raise AnalysisSpecError(f"{where} must be an object like {{name: errorRate, max: 0.01}}")
    unknown = sorted(
        set(raw) - {"name", "min", "max", "maxRegression", "minSamples", "clientErrors", "clientErrorMargin"}
    )
    if unknown:
        raise AnalysisSpecError(f"{where} has unknown field(s) {', '.join(unknown)}")
    name = raw.get("name")
    try:
        kind = MetricKind(str(name))
    except ValueError:
        choices = ", ".join(k.value for k in MetricKind)
        raise AnalysisSpecError(f"{where}.name must be one of {choices}, got {name!r}") from None
    key = BOUND_KEYS[DIRECTIONS[kind]]
    wrong = "min" if key == "max" else "max"
    if wrong in raw:
        better = "lower" if key == "max" else "higher"
        raise AnalysisSpecError(f"{where}.{wrong} does not apply: {better} {kind} is better, so set {key}")
    if key not in raw:
        raise AnalysisSpecError(f"{where}.{key} is required for {kind}")
    regression = raw.get("maxRegression")
    min_samples = raw.get("minSamples")
    for only_error_rate in ("clientErrors", "clientErrorMargin"):
        if only_error_rate in raw and kind is not MetricKind.ERROR_RATE:
            raise AnalysisSpecError(f"{where}.{only_error_rate} only applies to errorRate")
    try:
        client_errors = ClientErrors(raw.get("clientErrors", ClientErrors.EXCESS.value))
    except ValueError:
        choices = ", ".join(c.value for c in ClientErrors)
        raise AnalysisSpecError(
            f"{where}.clientErrors must be one of {choices}, got {raw.get('clientErrors')!r}"
        ) from None
    try:
        return MetricSpec(
            kind=kind,
            threshold=_number(raw[key], f"{where}.{key}"),
            max_regression=None if regression is None else _number(regression, f"{where}.maxRegression"),
            min_samples=None if min_samples is None else _int(min_samples, f"{where}.minSamples"),
            client_errors=client_errors,
            client_error_margin=_number(raw.get("clientErrorMargin", 0.05), f"{where}.clientErrorMargin"),
        )
    except AnalysisSpecError as exc:
        # MetricSpec names itself by kind; in a user's manifest the list index is what points at it.
        raise AnalysisSpecError(str(exc).replace(f"metrics[{kind}]", where)) from None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(raw: object, name: str) -> float:
    """'30s', '2m', '1m30s', '500ms' or a number of seconds -> seconds."""
    if isinstance(raw, bool):
        raise AnalysisSpecError(f"{name} must be a duration like 30s or 2m, got {raw!r}")
    if isinstance(raw, int | float):
        return _positive(float(raw), name)
    if isinstance(raw, str) and raw and _DURATION_PART.sub("", raw) == "":
        total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(raw))
        return _positive(total, name)
    raise AnalysisSpecError(f"{name} must be a duration like 30s, 2m or 1m30s, got {raw!r}")


def _positive(value: float, name: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise AnalysisSpecError(f"{name} must be a positive duration, got {value}")
    return value


def _number(raw: object, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise AnalysisSpecError(f"{name} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise AnalysisSpecError(f"{name} must be a number, got {raw!r}") from None
    _check_finite(value, name)
    return value


def _int(raw: object, name: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise AnalysisSpecError(f"{name} must be an integer, got {raw!r}")
    return raw


def _check_finite(value: float, name: str) -> None:
    if not math.isfinite(value):
        raise AnalysisSpecError(f"{name} must be a finite number, got {value}")

"""PromQL for canary analysis, as pure string building.

Each query covers both tracks at once (`sum by (track)`), so canary and stable are read at the same
evaluation time and one analysis costs at most six queries. Per-track selectors are joined with `or`
so each track can also be pinned to its model version: after a canary is replaced by a new version,
the old version's series in the window are not mixed in.

Ratios (error rate, F1, PSI, RMSE) are computed in Python from the counts, not in PromQL: an absent
5xx series then reads as zero errors instead of an empty result, and the sample counts come for free.
Series names and labels are the contract in METRICS_CONTRACT.md, gathered in `SeriesNames`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from .spec import MetricKind

CANARY = "canary"
STABLE = "stable"
TRACKS = (CANARY, STABLE)


@dataclass(frozen=True)
class SeriesNames:
    """Metric and label names of the serving pods (serving side) and of the scrape config (target side)."""

    requests: str = "mlrollout_requests_total"  # counter {endpoint, status}
    latency: str = "mlrollout_request_duration_seconds"  # histogram {endpoint}
    feedback: str = "mlrollout_feedback_total"  # counter {predicted, actual}
    predictions: str = "mlrollout_predictions_total"  # counter {class}, one per predicted row
    # Regressors' feedback: labels received, and the sums of squared and absolute errors over them.
    regression_feedback: str = "mlrollout_regression_feedback_total"
    squared_error: str = "mlrollout_regression_squared_error_total"
    absolute_error: str = "mlrollout_regression_absolute_error_total"
    # Live inputs in the training profile's bins, the reference shares, and how many features the
    # served version's profile covers (0: none logged).
    input_bins: str = "mlrollout_input_bin_total"  # counter {feature, bin}
    input_reference: str = "mlrollout_input_reference_share"  # gauge {feature, bin}
    input_profiled: str = "mlrollout_input_profile_features"  # gauge
    # Shadow steps: what the stable pods measured about the copies they sent the canary (serving/shadow.py).
    shadow_requests: str = "mlrollout_shadow_requests_total"  # counter {shadow_version, outcome}
    shadow_rows: str = "mlrollout_shadow_rows_total"  # counter {shadow_version, result: agree|disagree}
    shadow_latency: str = "mlrollout_shadow_duration_seconds"  # histogram {shadow_version}
    shadow_version_label: str = "shadow_version"
    feature_label: str = "feature"
    bin_label: str = "bin"
    endpoint_label: str = "endpoint"
    status_label: str = "status"
    predicted_label: str = "predicted"
    actual_label: str = "actual"
    class_label: str = "class"
    # Only inference calls count toward error rate and latency; probes and /metrics would dilute them.
    inference_endpoints: str | None = "invocations|infer"
    # Target labels set by the scrape config from pod labels, and the version label set by serving.
    namespace_label: str = "namespace"
    model_deployment_label: str = "model_deployment"
    track_label: str = "track"
    version_label: str = "model_version"


DEFAULT_SERIES = SeriesNames()


@dataclass(frozen=True)
class AnalysisTarget:
    """Which pods to judge: the ModelDeployment and, optionally, the version each track must serve."""

    namespace: str
    model_deployment: str
    canary_version: str | None = None
    stable_version: str | None = None
    # The canary is on a shadow step: it serves no user, so its error rate and latency are those of
    # the stable pods' copies to it (needs canary_version: their series name it as shadow_version).
    shadow: bool = False

    def __post_init__(self) -> None:
        if not self.namespace or not self.model_deployment:
            raise ValueError("AnalysisTarget needs a namespace and a model_deployment")


class Quantity(StrEnum):
    REQUESTS = "requests"
    ERRORS = "errors"
    CLIENT_ERRORS = "clientErrors"
    LATENCY_P99 = "latencyP99"
    LATENCY_COUNT = "latencyCount"
    FEEDBACK = "feedback"
    PREDICTIONS = "predictions"
    REGRESSION_FEEDBACK = "regressionFeedback"
    SQUARED_ERROR = "squaredError"
    ABSOLUTE_ERROR = "absoluteError"
    INPUT_BINS = "inputBins"
    SHADOW_ROWS = "shadowRows"
    INPUT_REFERENCE = "inputReference"
    INPUT_PROFILED = "inputProfiled"


NEEDS: Mapping[MetricKind, tuple[Quantity, ...]] = {
    MetricKind.ERROR_RATE: (Quantity.REQUESTS, Quantity.ERRORS, Quantity.CLIENT_ERRORS),
    MetricKind.LATENCY_P99_MS: (Quantity.LATENCY_P99, Quantity.LATENCY_COUNT),
    MetricKind.LIVE_F1: (Quantity.FEEDBACK,),
    MetricKind.PREDICTION_DRIFT: (Quantity.PREDICTIONS,),
    MetricKind.LIVE_RMSE: (Quantity.REGRESSION_FEEDBACK, Quantity.SQUARED_ERROR),
    MetricKind.LIVE_MAE: (Quantity.REGRESSION_FEEDBACK, Quantity.ABSOLUTE_ERROR),
    MetricKind.INPUT_DRIFT: (Quantity.INPUT_PROFILED, Quantity.INPUT_REFERENCE, Quantity.INPUT_BINS),
    MetricKind.AGREEMENT: (Quantity.SHADOW_ROWS,),
}


def format_window(seconds: float) -> str:
    """PromQL range duration; whole seconds when possible, else milliseconds."""
    if seconds <= 0:
        raise ValueError(f"window must be > 0 seconds, got {seconds}")
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def selector(target: AnalysisTarget, track: str, names: SeriesNames, extra: Iterable[str] = ()) -> str:
    matchers = [
        f"{names.namespace_label}={quote(target.namespace)}",
        f"{names.model_deployment_label}={quote(target.model_deployment)}",
        f"{names.track_label}={quote(track)}",
    ]
    version = target.canary_version if track == CANARY else target.stable_version
    if version is not None:
        matchers.append(f"{names.version_label}={quote(version)}")
    matchers.extend(extra)
    return "{" + ", ".join(matchers) + "}"


def feedback_query(target: AnalysisTarget, window: str, names: SeriesNames) -> str:
    """Confusion counts per track (see `by_predicting_version`)."""
    return by_predicting_version(
        names.feedback, target, window, names, (names.predicted_label, names.actual_label)
    )


def by_predicting_version(
    metric: str, target: AnalysisTarget, window: str, names: SeriesNames, by: tuple[str, ...] = ()
) -> str:
    """A feedback counter's increase per track. Feedback reaches whichever pod the Service picks, so
    serving counts it under the version named in the prediction token, not under the receiving
    pod's track: with two different versions, each track's counts are selected by version alone
    (and labelled with the track by label_replace). With one version on both tracks (a serving-only
    change) or versions unknown, by track, as the pods that received the feedback are labelled."""
    group = ", ".join((names.track_label, *by))
    canary, stable = target.canary_version, target.stable_version
    if canary is None or stable is None or canary == stable:
        by_track = " or ".join(f"increase({metric}{selector(target, t, names)}[{window}])" for t in TRACKS)
        return f"sum by ({group}) ({by_track})"
    base = [
        f"{names.namespace_label}={quote(target.namespace)}",
        f"{names.model_deployment_label}={quote(target.model_deployment)}",
    ]
    parts: list[str] = []
    for track, version in ((CANARY, canary), (STABLE, stable)):
        sel = "{" + ", ".join([*base, f"{names.version_label}={quote(version)}"]) + "}"
        grouping = f" by ({', '.join(by)})" if by else ""
        counts = f"sum{grouping} (increase({metric}{sel}[{window}]))"
        parts.append(f'label_replace({counts}, {quote(names.track_label)}, {quote(track)}, "", "")')
    return f"sum by ({group}) ({' or '.join(parts)})"


def build_queries(
    target: AnalysisTarget,
    kinds: Iterable[MetricKind],
    window_seconds: float,
    names: SeriesNames = DEFAULT_SERIES,
) -> dict[Quantity, str]:
    """The PromQL for every quantity the given metrics need, keyed by quantity."""
    window = format_window(window_seconds)
    track = names.track_label
    inference = (
        (f"{names.endpoint_label}=~{quote(names.inference_endpoints)}",) if names.inference_endpoints else ()
    )
    errors = (*inference, f"{names.status_label}=~{quote('5..')}")
    client_errors = (*inference, f"{names.status_label}=~{quote('4..')}")

    per_bin = f"{track}, {names.feature_label}, {names.bin_label}"

    def both(fn: str, metric: str, extra: tuple[str, ...] = ()) -> str:
        return " or ".join(f"{fn}({metric}{selector(target, t, names, extra)}[{window}])" for t in TRACKS)

    builders = {
        Quantity.REQUESTS: lambda: f"sum by ({track}) ({both('increase', names.requests, inference)})",
        Quantity.ERRORS: lambda: f"sum by ({track}) ({both('increase', names.requests, errors)})",
        Quantity.CLIENT_ERRORS: lambda: (
            f"sum by ({track}) ({both('increase', names.requests, client_errors)})"
        ),
        Quantity.LATENCY_COUNT: lambda: (
            f"sum by ({track}) ({both('increase', names.latency + '_count', inference)})"
        ),
        Quantity.LATENCY_P99: lambda: (
            f"histogram_quantile(0.99, sum by ({track}, le) "
            f"({both('rate', names.latency + '_bucket', inference)}))"
        ),
        Quantity.FEEDBACK: lambda: feedback_query(target, window, names),
        Quantity.REGRESSION_FEEDBACK: lambda: by_predicting_version(
            names.regression_feedback, target, window, names
        ),
        Quantity.SQUARED_ERROR: lambda: by_predicting_version(names.squared_error, target, window, names),
        Quantity.ABSOLUTE_ERROR: lambda: by_predicting_version(names.absolute_error, target, window, names),
        Quantity.INPUT_BINS: lambda: f"sum by ({per_bin}) ({both('increase', names.input_bins)})",
        # Gauges: an instant read; every pod of a version exports the same shares, so max, not sum.
        Quantity.INPUT_REFERENCE: lambda: (
            f"max by ({per_bin}) ("
            + " or ".join(f"{names.input_reference}{selector(target, t, names)}" for t in TRACKS)
            + ")"
        ),
        Quantity.INPUT_PROFILED: lambda: (
            f"max by ({track}) ("
            + " or ".join(f"{names.input_profiled}{selector(target, t, names)}" for t in TRACKS)
            + ")"
        ),
        Quantity.PREDICTIONS: lambda: (
            f"sum by ({track}, {names.class_label}) ({both('increase', names.predictions)})"
        ),
    }
    builders.update(
        _shadow_builders(
            target, window, names, inference=inference, errors=errors, client_errors=client_errors
        )
    )
    wanted = [q for kind in kinds for q in NEEDS[kind]]
    return {q: builders[q]() for q in dict.fromkeys(wanted)}


def _shadow_builders(
    target: AnalysisTarget,
    window: str,
    names: SeriesNames,
    *,
    inference: tuple[str, ...],
    errors: tuple[str, ...],
    client_errors: tuple[str, ...],
) -> dict[Quantity, Callable[[], str]]:
    """Agreement, and during a shadow step the canary's side of error rate and latency, from the
    stable pods' shadow series (selected by shadow_version, whichever pods sent the copies) and
    labelled track="canary", joined with the stable track's own series."""
    track = names.track_label
    version = quote(target.canary_version or "")
    base = (
        f"{names.namespace_label}={quote(target.namespace)}, "
        f"{names.model_deployment_label}={quote(target.model_deployment)}, "
        f"{names.shadow_version_label}={version}"
    )
    rows = {
        Quantity.SHADOW_ROWS: lambda: f"sum by (result) (increase({names.shadow_rows}{{{base}}}[{window}]))"
    }
    if not target.shadow:
        return rows

    def canary(fn: str, metric: str, matchers: str = "", by: str = "") -> str:
        grouped = f" by ({by})" if by else ""
        inner = f"sum{grouped} ({fn}({metric}{{{base}{matchers}}}[{window}]))"
        return f'label_replace({inner}, {quote(track)}, {quote(CANARY)}, "", "")'

    def stable(fn: str, metric: str, extra: tuple[str, ...]) -> str:
        return f"{fn}({metric}{selector(target, STABLE, names, extra)}[{window}])"

    # A dropped copy is the stable pod's queue and a not_ready one was refused before the canary's
    # Service first routed to it: neither reached the canary. Every other outcome but an answer is
    # the canary failing a request the stable version answered (a 4xx included: stable took it).
    sent = ', outcome!~"dropped|not_ready"'
    failed = ', outcome!~"answered|dropped|not_ready"'
    return {
        **rows,
        Quantity.REQUESTS: lambda: (
            f"sum by ({track}) ({canary('increase', names.shadow_requests, sent)} "
            f"or {stable('increase', names.requests, inference)})"
        ),
        Quantity.ERRORS: lambda: (
            f"sum by ({track}) ({canary('increase', names.shadow_requests, failed)} "
            f"or {stable('increase', names.requests, errors)})"
        ),
        Quantity.CLIENT_ERRORS: lambda: (
            f"sum by ({track}) ({stable('increase', names.requests, client_errors)})"
        ),
        Quantity.LATENCY_COUNT: lambda: (
            f"sum by ({track}) ({canary('increase', names.shadow_latency + '_count')} "
            f"or {stable('increase', names.latency + '_count', inference)})"
        ),
        Quantity.LATENCY_P99: lambda: (
            f"histogram_quantile(0.99, sum by ({track}, le) "
            f"({canary('rate', names.shadow_latency + '_bucket', by='le')} "
            f"or {stable('rate', names.latency + '_bucket', inference)}))"
        ),
    }

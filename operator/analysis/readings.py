"""From query results to per-track Readings: sums, ratios, F1, PSI and RMSE/MAE over the returned series.

An absent series is not a zero: a track with no request series at all reads as a problem (no data),
so the measurement is Inconclusive. The one exception is the 5xx count, whose series only exist once
an error happened; with requests present, no 5xx series means zero errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .measurement import Reading
from .promql import CANARY, DEFAULT_SERIES, STABLE, TRACKS, Quantity, SeriesNames
from .signals import macro_f1, psi
from .spec import ClientErrors, MetricKind

PROFILE_METADATA_KEY = "mlrollout_profile"  # where serving/profile.py puts it (mlrollout.serving.profile)


@dataclass(frozen=True)
class Sample:
    """One element of an instant-vector result."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class QueryFailure:
    """A query that could not be answered (unreachable, timeout, bad PromQL): the reason, verbatim."""

    reason: str


QueryResult = Sequence[Sample] | QueryFailure
Results = Mapping[Quantity, QueryResult]


def derive(
    kind: MetricKind,
    results: Results,
    names: SeriesNames = DEFAULT_SERIES,
    *,
    client_errors: ClientErrors = ClientErrors.EXCESS,
    client_error_margin: float = 0.05,
) -> dict[str, Reading]:
    """Canary and stable readings of one metric, keyed by track."""
    if kind is MetricKind.ERROR_RATE:
        return _error_rates(results, names, client_errors, client_error_margin)
    if kind is MetricKind.LATENCY_P99_MS:
        return {t: _latency(results, t, names) for t in TRACKS}
    if kind is MetricKind.LIVE_F1:
        return {t: _live_f1(results, t, names) for t in TRACKS}
    if kind is MetricKind.LIVE_RMSE:
        return {t: _regression_error(results, t, names, Quantity.SQUARED_ERROR) for t in TRACKS}
    if kind is MetricKind.LIVE_MAE:
        return {t: _regression_error(results, t, names, Quantity.ABSOLUTE_ERROR) for t in TRACKS}
    if kind is MetricKind.INPUT_DRIFT:
        return _input_drift(results, names)
    if kind is MetricKind.AGREEMENT:
        return _agreement(results)
    return _drift(results, names)


def _agreement(results: Results) -> dict[str, Reading]:
    """Rows both versions answered in the window, and the share where they agree: the canary's
    reading (stable has no value of its own: agreement already compares the canary with stable)."""
    rows = _get(results, Quantity.SHADOW_ROWS)
    if isinstance(rows, str):
        return {t: Reading(None, 0, rows) for t in TRACKS}
    counts: dict[str, float] = {}
    for s in rows:
        if not math.isnan(s.value):
            result = s.labels.get("result", "")
            counts[result] = counts.get(result, 0.0) + max(0.0, s.value)
    if not counts:
        problem = (
            "no shadow comparisons in the window (no copies answered yet: the shadow Service not routing"
            " to its pods, or the stable pods not scraped)"
        )
        return {t: Reading(None, 0, problem) for t in TRACKS}
    total = sum(counts.values())
    share = counts.get("agree", 0.0) / total if total > 0 else None
    return {CANARY: Reading(share, _count(total)), STABLE: Reading(None, _count(total))}


def _get(results: Results, quantity: Quantity) -> Sequence[Sample] | str:
    """The samples, or the reason there are none."""
    result = results.get(quantity)
    if result is None:
        return f"{quantity} was not queried"
    if isinstance(result, QueryFailure):
        return f"query for {quantity} failed: {result.reason}"
    return result


def _track_total(samples: Sequence[Sample], track: str, names: SeriesNames) -> float | None:
    values = [s.value for s in samples if s.labels.get(names.track_label) == track]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) if values else None


def _count(value: float) -> int:
    # increase() extrapolates to the window edges, so counts come back fractional.
    return max(0, round(value))


def _error_rate(results: Results, track: str, names: SeriesNames) -> Reading:
    requests = _get(results, Quantity.REQUESTS)
    if isinstance(requests, str):
        return Reading(None, 0, requests)
    errors = _get(results, Quantity.ERRORS)
    if isinstance(errors, str):
        return Reading(None, 0, errors)
    total = _track_total(requests, track, names)
    if total is None:
        return Reading(None, 0, f"no request series for the {track} track (no traffic or not scraped)")
    error_count = _track_total(errors, track, names) or 0.0
    return Reading(min(1.0, error_count / total) if total > 0 else None, _count(total))


def _error_rates(
    results: Results, names: SeriesNames, policy: ClientErrors, margin: float
) -> dict[str, Reading]:
    """5xx share per track, plus 4xx by policy: `all` adds each track's 4xx share; `excess` adds
    the canary's 4xx share above stable's plus `margin` (stable's share is 0 when stable has no
    traffic to compare with), so a canary that refuses every request fails while clients' bad
    input, refused by both tracks alike, does not."""
    base = {t: _error_rate(results, t, names) for t in TRACKS}
    if policy is ClientErrors.IGNORE or Quantity.CLIENT_ERRORS not in results:
        return base
    client = _get(results, Quantity.CLIENT_ERRORS)
    if isinstance(client, str):
        return {t: Reading(None, 0, client) if r.problem is None else r for t, r in base.items()}
    requests = _get(results, Quantity.REQUESTS)
    if isinstance(requests, str):
        return base  # every reading already says why

    def share(track: str) -> float | None:
        total = _track_total(requests, track, names)
        if not total:
            return None
        return (_track_total(client, track, names) or 0.0) / total

    shares = {t: share(t) for t in TRACKS}
    out = dict(base)
    for t in TRACKS:
        reading, own = base[t], shares[t]
        if reading.problem is not None or reading.value is None or own is None:
            continue
        if policy is ClientErrors.ALL:
            extra = own
        elif t == CANARY:
            stable_share = shares[STABLE]
            extra = max(0.0, own - (stable_share or 0.0) - margin)
        else:
            extra = 0.0
        out[t] = Reading(min(1.0, reading.value + extra), reading.samples)
    return out


def _latency(results: Results, track: str, names: SeriesNames) -> Reading:
    counts = _get(results, Quantity.LATENCY_COUNT)
    if isinstance(counts, str):
        return Reading(None, 0, counts)
    quantiles = _get(results, Quantity.LATENCY_P99)
    if isinstance(quantiles, str):
        return Reading(None, 0, quantiles)
    total = _track_total(counts, track, names)
    if total is None:
        return Reading(None, 0, f"no latency histogram for the {track} track (no traffic or not scraped)")
    p99 = next((s.value for s in quantiles if s.labels.get(names.track_label) == track), math.nan)
    # NaN: no observations in the window; +Inf: p99 beyond the largest bucket, a legitimate "too slow".
    return Reading(None if math.isnan(p99) else p99 * 1000.0, _count(total))


def _live_f1(results: Results, track: str, names: SeriesNames) -> Reading:
    feedback = _get(results, Quantity.FEEDBACK)
    if isinstance(feedback, str):
        return Reading(None, 0, feedback)
    confusion: dict[tuple[str, str], float] = {}
    for s in feedback:
        if s.labels.get(names.track_label) != track or math.isnan(s.value):
            continue
        key = (s.labels.get(names.predicted_label, ""), s.labels.get(names.actual_label, ""))
        confusion[key] = confusion.get(key, 0.0) + max(0.0, s.value)
    total = sum(confusion.values())
    if not confusion:
        return Reading(None, 0, f"no feedback series for the {track} track (no labels sent to /feedback)")
    return Reading(macro_f1(confusion) if total > 0 else None, _count(total))


def _regression_error(results: Results, track: str, names: SeriesNames, errors: Quantity) -> Reading:
    """RMSE (from the squared-error sum) or MAE (from the absolute-error sum) over the labels that
    arrived in the window: sum / count, and its square root for RMSE."""
    labels = _get(results, Quantity.REGRESSION_FEEDBACK)
    if isinstance(labels, str):
        return Reading(None, 0, labels)
    sums = _get(results, errors)
    if isinstance(sums, str):
        return Reading(None, 0, sums)
    count = _track_total(labels, track, names)
    if count is None:
        return Reading(
            None, 0, f"no regression feedback series for the {track} track (no labels sent to /feedback)"
        )
    total = _track_total(sums, track, names)
    if count <= 0 or total is None:
        return Reading(None, _count(count))
    mean = max(0.0, total) / count
    return Reading(math.sqrt(mean) if errors is Quantity.SQUARED_ERROR else mean, _count(count))


def _input_drift(results: Results, names: SeriesNames) -> dict[str, Reading]:
    """Per track: PSI of each profiled feature's live bin counts against its training reference
    shares, the worst feature's value (named in the detail), and the rows behind it. A version
    that logged no profile is a problem (Inconclusive with that reason), never a zero drift."""
    got = [_get(results, q) for q in (Quantity.INPUT_PROFILED, Quantity.INPUT_REFERENCE, Quantity.INPUT_BINS)]
    for g in got:
        if isinstance(g, str):
            return {t: Reading(None, 0, g) for t in TRACKS}
    profiled, reference, bins = (g for g in got if not isinstance(g, str))
    out: dict[str, Reading] = {}
    for t in TRACKS:
        features = _track_total(profiled, t, names)
        if features is None:
            out[t] = Reading(None, 0, f"no training-profile gauge for the {t} track (its pods not scraped)")
            continue
        if features <= 0:
            out[t] = Reading(
                None,
                0,
                f"the {t} version logged no training profile (metadata {PROFILE_METADATA_KEY} of its "
                "MLmodel), so its inputs cannot be compared with training",
            )
            continue
        expected = _by_feature(reference, t, names)
        live = _by_feature(bins, t, names)
        scores: dict[str, float] = {}
        rows = 0.0
        for feature, shares in expected.items():
            counts = {b: live.get(feature, {}).get(b, 0.0) for b in shares}
            total = sum(counts.values())
            if total > 0 and sum(shares.values()) > 0:
                scores[feature] = psi(counts, shares)
                rows = max(rows, total)
        if not scores:
            out[t] = Reading(None, 0, f"no input bin series for the {t} track (no traffic or not scraped)")
            continue
        worst = max(scores, key=lambda f: scores[f])
        out[t] = Reading(
            scores[worst], _count(rows), detail=f"worst feature {worst!r} (PSI {scores[worst]:.3g})"
        )
    return out


def _by_feature(samples: Sequence[Sample], track: str, names: SeriesNames) -> dict[str, dict[str, float]]:
    grouped: dict[str, dict[str, float]] = {}
    for s in samples:
        if s.labels.get(names.track_label) != track or math.isnan(s.value):
            continue
        feature, label = s.labels.get(names.feature_label, ""), s.labels.get(names.bin_label, "")
        cell = grouped.setdefault(feature, {})
        cell[label] = cell.get(label, 0.0) + max(0.0, s.value)
    return grouped


def _class_counts(samples: Sequence[Sample], track: str, names: SeriesNames) -> dict[str, float]:
    counts: dict[str, float] = {}
    for s in samples:
        if s.labels.get(names.track_label) == track and not math.isnan(s.value):
            cls = s.labels.get(names.class_label, "")
            counts[cls] = counts.get(cls, 0.0) + max(0.0, s.value)
    return counts


def _drift(results: Results, names: SeriesNames) -> dict[str, Reading]:
    predictions = _get(results, Quantity.PREDICTIONS)
    if isinstance(predictions, str):
        return {t: Reading(None, 0, predictions) for t in TRACKS}
    counts = {t: _class_counts(predictions, t, names) for t in TRACKS}
    readings: dict[str, Reading] = {}
    for t in TRACKS:
        if not counts[t]:
            problem = f"no prediction series for the {t} track (no traffic or not scraped)"
            readings[t] = Reading(None, 0, problem)
        else:
            readings[t] = Reading(None, _count(sum(counts[t].values())))
    canary, stable = readings[CANARY], readings[STABLE]
    if canary.problem is None and stable.problem is None and canary.samples > 0 and stable.samples > 0:
        readings[CANARY] = Reading(psi(counts[CANARY], counts[STABLE]), canary.samples)
    return readings

"""Prometheus metrics, correct under gunicorn with several workers (see METRICS.md for names and labels).

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported) each worker
writes its own mmap files and /metrics aggregates them; live F1 is computed at scrape time from the
aggregated confusion counter, so it is the same whichever worker answers the scrape (live RMSE and MAE
of a regressor likewise, from its error-sum counters).

Every family has a fixed number of series per model version and track: classes are a classifier's
known classes (any other predicted label is counted as `other` past MAX_CLASS_LABELS), a regressor's
predictions go into the buckets of one histogram, never a series per predicted value."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from mlrollout.serving.config import DEFAULT_PREDICTION_BUCKETS
from mlrollout.serving.feedback import macro_f1
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

IDENTITY = ("model", "model_version", "track")  # model_version: what the operator's analysis matches
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
REQUEST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
STAGES = ("parse", "predict", "serialize")
CONFUSION = "mlrollout_feedback"  # family name; samples end in _total
REGRESSION_COUNT = "mlrollout_regression_feedback"
SQUARED_ERROR = "mlrollout_regression_squared_error"
ABSOLUTE_ERROR = "mlrollout_regression_absolute_error"
MAX_CLASS_LABELS = 64  # predicted labels per process for a model without known classes
OTHER_CLASS = "other"
# Shadow mode (serving/shadow.py): on the mirroring pods, by the shadow's version.
SHADOW_REQUESTS = "mlrollout_shadow_requests"  # copies by outcome
SHADOW_ROWS = "mlrollout_shadow_rows"  # compared rows by result (agree/disagree)
SHADOW_DURATION = "mlrollout_shadow_duration_seconds"  # the shadow's answer time


@dataclass(frozen=True)
class Identity:
    model: str
    version: str
    track: str

    def labels(self) -> dict[str, str]:
        return {"model": self.model, "model_version": self.version, "track": self.track}


class ServingMetrics:
    """All series of one server; children for fixed label sets are bound once, not per request."""

    def __init__(
        self,
        identity: Identity,
        registry: CollectorRegistry | None = None,
        *,
        prediction_buckets: tuple[float, ...] = DEFAULT_PREDICTION_BUCKETS,
        known_classes: Iterable[Any] = (),
    ) -> None:
        reg: Any = registry if registry is not None else _default_registry()
        ident = identity.labels()
        self.identity = identity
        self.registry = reg  # for series other modules own (serving/input_bins.py)
        self.requests = Counter(
            "mlrollout_requests",
            "HTTP requests by endpoint and status code.",
            (*IDENTITY, "endpoint", "status"),
            registry=reg,
        )
        self.latency = Histogram(
            "mlrollout_request_duration_seconds",
            "Time from request start to response, per endpoint.",
            (*IDENTITY, "endpoint"),
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        stage = Histogram(
            "mlrollout_stage_duration_seconds",
            "Time spent per scoring stage (parse, predict, serialize).",
            (*IDENTITY, "stage"),
            buckets=FAST_BUCKETS,
            registry=reg,
        )
        self.stage = {s: stage.labels(**ident, stage=s) for s in STAGES}
        self.rows = Counter("mlrollout_rows", "Rows scored.", IDENTITY, registry=reg).labels(**ident)
        self.predictions = Counter(
            "mlrollout_predictions", "Predictions by predicted class.", (*IDENTITY, "class"), registry=reg
        )
        self.values = Histogram(
            "mlrollout_prediction_value",
            "Predicted values of a regressor (numeric predictions), in fixed buckets.",
            IDENTITY,
            buckets=prediction_buckets,
            registry=reg,
        ).labels(**ident)
        self._value_bounds = np.asarray(self.values._upper_bounds, dtype=np.float64)
        self.missing = Counter(
            "mlrollout_missing_values",
            "Missing input values received, by feature.",
            (*IDENTITY, "feature"),
            registry=reg,
        )
        self.feedback = Counter(
            "mlrollout_feedback",
            "Labelled predictions from /feedback, by (predicted, actual) class.",
            (*IDENTITY, "predicted", "actual"),
            registry=reg,
        )
        info = Gauge(
            "mlrollout_model_info",
            "The model this server serves (value 1).",
            (*IDENTITY, "flavor"),
            registry=reg,
            multiprocess_mode="max",
        )
        self.regression_count = Counter(
            REGRESSION_COUNT,
            "Labelled regressor predictions from /feedback.",
            IDENTITY,
            registry=reg,
        )
        self.squared_error = Counter(
            SQUARED_ERROR,
            "Sum of (prediction - label)^2 over labelled regressor predictions.",
            IDENTITY,
            registry=reg,
        )
        self.absolute_error = Counter(
            ABSOLUTE_ERROR,
            "Sum of |prediction - label| over labelled regressor predictions.",
            IDENTITY,
            registry=reg,
        )
        self._info = info
        self._load = Gauge(
            "mlrollout_model_load_seconds",
            "Time taken to load the model at start.",
            IDENTITY,
            registry=reg,
            multiprocess_mode="max",
        ).labels(**ident)
        self._ident = ident
        self._endpoint_cache: dict[tuple[str, int], Any] = {}
        self._latency_cache: dict[str, Any] = {}
        self._class_cache: dict[Any, Any] = {}
        self._known_classes = frozenset(str(c) for c in known_classes)
        self._extra_labels = 0

    def model_loaded(self, flavor: str, seconds: float) -> None:
        self._info.labels(**self._ident, flavor=flavor).set(1)
        self._load.set(seconds)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        counter = self._endpoint_cache.get(key)
        if counter is None:
            counter = self._endpoint_cache[key] = self.requests.labels(
                **self._ident, endpoint=endpoint, status=str(status)
            )
        counter.inc()
        hist = self._latency_cache.get(endpoint)
        if hist is None:
            hist = self._latency_cache[endpoint] = self.latency.labels(**self._ident, endpoint=endpoint)
        hist.observe(seconds)

    def scored(self, class_counts: Mapping[Any, int], rows: int) -> None:
        """Rows scored, and predicted rows per class (a model's known classes, or at most
        MAX_CLASS_LABELS labels per process, the rest counted as `other`)."""
        self.rows.inc(rows)
        for label, count in class_counts.items():
            child = self._class_cache.get(label)
            if child is None:
                text = str(label)
                if text not in self._known_classes:
                    if self._extra_labels >= MAX_CLASS_LABELS:
                        text = OTHER_CLASS
                    else:
                        self._extra_labels += 1
                child = self.predictions.labels(**self._ident, **{"class": text})
                if text != OTHER_CLASS:  # the cache holds at most the bounded set of labels
                    self._class_cache[label] = child
            child.inc(count)

    def scored_values(self, values: npt.NDArray[Any]) -> None:
        """Rows scored, and numeric predictions into the value histogram (non-finite ones skipped):
        one counter increment per bucket hit, not one observe per row."""
        numbers = np.asarray(values, dtype=np.float64).ravel()
        self.rows.inc(len(numbers))
        numbers = numbers[np.isfinite(numbers)]
        if not numbers.size:
            return
        buckets = getattr(self.values, "_buckets", None)
        total = getattr(self.values, "_sum", None)
        if buckets is None or total is None or len(buckets) != len(self._value_bounds):
            for v in numbers.tolist():  # another prometheus_client layout: its public API
                self.values.observe(v)
            return
        # Histogram.observe puts v in the first bucket whose bound is >= v: searchsorted, side left.
        hits = np.bincount(np.searchsorted(self._value_bounds, numbers, side="left"), minlength=len(buckets))
        for i in np.flatnonzero(hits).tolist():
            buckets[i].inc(int(hits[i]))
        total.inc(float(numbers.sum()))

    def missing_values(self, per_feature: Mapping[str, int]) -> None:
        for feature, count in per_feature.items():
            self.missing.labels(**self._ident, feature=feature).inc(count)

    def labelled(self, pairs: Mapping[tuple[str, str], int], version: str | None = None) -> None:
        """Count labelled predictions for the version that made them (a token may name another)."""
        ident = self._ident if version is None else {**self._ident, "model_version": version}
        for (predicted, actual), count in pairs.items():
            self.feedback.labels(**ident, predicted=predicted, actual=actual).inc(count)

    def regression_labelled(self, errors: npt.NDArray[np.float64], version: str | None = None) -> None:
        """Count labelled regressor predictions (errors = prediction - label) for the predicting version."""
        ident = self._ident if version is None else {**self._ident, "model_version": version}
        self.regression_count.labels(**ident).inc(len(errors))
        self.squared_error.labels(**ident).inc(float(np.square(errors).sum()))
        self.absolute_error.labels(**ident).inc(float(np.abs(errors).sum()))


def _default_registry() -> CollectorRegistry:
    from prometheus_client import REGISTRY

    return REGISTRY


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def live_f1_families(families: Iterable[Metric]) -> list[Metric]:
    """Live F1 per (model, version, track), from the confusion counter in already-collected families."""
    confusion: dict[tuple[str, str, str], dict[tuple[str, str], float]] = {}
    for family in families:
        if family.name != CONFUSION:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            key = (sample.labels["model"], sample.labels["model_version"], sample.labels["track"])
            pair = (sample.labels["predicted"], sample.labels["actual"])
            cell = confusion.setdefault(key, {})
            cell[pair] = cell.get(pair, 0.0) + sample.value
    f1 = GaugeMetricFamily(
        "mlrollout_live_f1",
        "Macro F1 of predictions against /feedback labels since start, all workers.",
        labels=list(IDENTITY),
    )
    samples = GaugeMetricFamily(
        "mlrollout_live_f1_samples", "Labelled predictions behind mlrollout_live_f1.", labels=list(IDENTITY)
    )
    for key, cells in sorted(confusion.items()):
        score = macro_f1(cells)
        if score is not None:
            f1.add_metric(list(key), score)
        samples.add_metric(list(key), sum(cells.values()))
    return [f1, samples, *live_error_families(families)]


def live_error_families(families: Iterable[Metric]) -> list[Metric]:
    """Live RMSE and MAE per (model, version, track), from the regression error-sum counters."""
    sums: dict[str, dict[tuple[str, str, str], float]] = {
        REGRESSION_COUNT: {},
        SQUARED_ERROR: {},
        ABSOLUTE_ERROR: {},
    }
    for family in families:
        cell = sums.get(family.name)
        if cell is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (sample.labels["model"], sample.labels["model_version"], sample.labels["track"])
                cell[key] = cell.get(key, 0.0) + sample.value
    rmse = GaugeMetricFamily(
        "mlrollout_live_rmse",
        "Root mean squared error of regressor predictions against /feedback labels since start.",
        labels=list(IDENTITY),
    )
    mae = GaugeMetricFamily(
        "mlrollout_live_mae",
        "Mean absolute error of regressor predictions against /feedback labels since start.",
        labels=list(IDENTITY),
    )
    samples = GaugeMetricFamily(
        "mlrollout_live_error_samples",
        "Labelled regressor predictions behind mlrollout_live_rmse and mlrollout_live_mae.",
        labels=list(IDENTITY),
    )
    for key, count in sorted(sums[REGRESSION_COUNT].items()):
        samples.add_metric(list(key), count)
        if count > 0:
            rmse.add_metric(list(key), math.sqrt(sums[SQUARED_ERROR].get(key, 0.0) / count))
            mae.add_metric(list(key), sums[ABSOLUTE_ERROR].get(key, 0.0) / count)
    return [rmse, mae, samples]


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def exposition(registry: CollectorRegistry | None = None) -> bytes:
    """The text page for /metrics: all workers' series (multiprocess mode) or `registry`'s, plus live F1."""
    directory = multiprocess_dir()
    if directory:
        collector = MultiProcessCollector(CollectorRegistry(), path=directory)  # type: ignore[no-untyped-call]
        families = list(collector.collect())  # type: ignore[no-untyped-call]
    else:
        families = list((registry or _default_registry()).collect())
    return generate_latest(_Families(families + live_f1_families(families)))

"""The operator's own Prometheus metrics about analysis, so the judgments themselves can be graphed
and alerted on (mlrollout_analysis_*)."""

from __future__ import annotations

import contextlib

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from .judge import Action, AnalysisOutcome
from .measurement import Verdict
from .promql import CANARY, STABLE, AnalysisTarget
from .spec import MetricKind

_KEYS = ("namespace", "model_deployment")


class AnalysisMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.value = Gauge(
            "mlrollout_analysis_measurement",
            "Last measured value of an analysis metric per track (NaN when it could not be measured).",
            [*_KEYS, "metric", "track"],
            registry=registry,
        )
        self.threshold = Gauge(
            "mlrollout_analysis_threshold",
            "Effective threshold of the last measurement (stricter of absolute and stable-relative).",
            [*_KEYS, "metric"],
            registry=registry,
        )
        self.samples = Gauge(
            "mlrollout_analysis_samples",
            "Canary samples behind the last measurement (requests, feedback labels or predictions).",
            [*_KEYS, "metric"],
            registry=registry,
        )
        self.metric_verdicts = Counter(
            "mlrollout_analysis_metric_verdicts",
            "Measurements by metric and verdict.",
            [*_KEYS, "metric", "verdict"],
            registry=registry,
        )
        self.runs = Counter(
            "mlrollout_analysis_runs",
            "Analysis runs by overall verdict and resulting action.",
            [*_KEYS, "verdict", "action"],
            registry=registry,
        )
        self.consecutive_failures = Gauge(
            "mlrollout_analysis_consecutive_failures",
            "Consecutive failed analysis runs (rollback at failureLimit).",
            list(_KEYS),
            registry=registry,
        )

    def record(self, target: AnalysisTarget, outcome: AnalysisOutcome) -> None:
        key = (target.namespace, target.model_deployment)
        nan = float("nan")
        for m in outcome.measurements:
            canary, stable = m.value, m.stable_value
            self.value.labels(*key, m.metric.value, CANARY).set(nan if canary is None else canary)
            self.value.labels(*key, m.metric.value, STABLE).set(nan if stable is None else stable)
            self.threshold.labels(*key, m.metric.value).set(m.threshold)
            self.samples.labels(*key, m.metric.value).set(m.samples)
            self.metric_verdicts.labels(*key, m.metric.value, m.verdict.value).inc()
        self.runs.labels(*key, outcome.verdict.value, outcome.action.value).inc()
        self.consecutive_failures.labels(*key).set(outcome.state.consecutive_failures)

    def forget(self, namespace: str, model_deployment: str) -> None:
        """Drop the series of a deleted ModelDeployment so dashboards do not show ghosts."""
        key = (namespace, model_deployment)
        for kind in MetricKind:
            for track in (CANARY, STABLE):
                _remove(self.value, *key, kind.value, track)
            _remove(self.threshold, *key, kind.value)
            _remove(self.samples, *key, kind.value)
            for verdict in Verdict:
                _remove(self.metric_verdicts, *key, kind.value, verdict.value)
        for verdict in Verdict:
            for action in Action:
                _remove(self.runs, *key, verdict.value, action.value)
        _remove(self.consecutive_failures, *key)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never recorded for this combination
        metric.remove(*labels)

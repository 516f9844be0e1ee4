"""AnalysisSpec.from_dict: defaults, durations, and clear errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from mlrollout.operator.analysis import (
    AnalysisSpec,
    AnalysisSpecError,
    Direction,
    InconclusivePolicy,
    MetricKind,
    parse_duration,
)

METRICS = [{"name": "errorRate", "max": 0.01}]


def spec(**overrides: Any) -> dict[str, Any]:
    return {"prometheus": {"address": "http://prom:9090"}, "metrics": METRICS, **overrides}


def test_defaults_and_full_example() -> None:
    s = AnalysisSpec.from_dict(spec())
    assert (s.interval_seconds, s.window_seconds, s.min_samples, s.failure_limit) == (30, 60, 100, 2)
    assert s.inconclusive_policy is InconclusivePolicy.HOLD
    assert s.metrics[0].direction is Direction.AT_MOST

    full = AnalysisSpec.from_dict(
        {
            "interval": "10s",
            "window": "1m30s",
            "minSamples": 50,
            "failureLimit": 3,
            "inconclusivePolicy": "extend",
            "inconclusiveLimit": 4,
            "prometheus": {"address": "http://prom:9090/", "timeoutSeconds": 2},
            "metrics": [
                {"name": "errorRate", "max": 0.01},
                {"name": "latencyP99Ms", "max": 200, "maxRegression": 50},
                {"name": "liveF1", "min": 0.8, "maxRegression": 0.05, "minSamples": 20},
                {"name": "predictionDrift", "max": 0.2},
            ],
        }
    )
    assert full.window_seconds == 90
    assert full.interval_seconds == 10
    assert full.prometheus_address == "http://prom:9090"
    assert [
        m.kind for m in full.metrics
    ] == [  # a classifier's metrics (regressors': test_regression_metrics)
        MetricKind.ERROR_RATE,
        MetricKind.LATENCY_P99_MS,
        MetricKind.LIVE_F1,
        MetricKind.PREDICTION_DRIFT,
    ]
    assert full.metrics[2].direction is Direction.AT_LEAST
    assert full.min_samples_for(full.metrics[2]) == 20
    assert full.min_samples_for(full.metrics[0]) == 50


def test_window_defaults_to_interval_when_longer_than_a_minute() -> None:
    assert AnalysisSpec.from_dict(spec(interval="5m")).window_seconds == 300


def test_operator_default_prometheus_address() -> None:
    raw = {"metrics": METRICS}
    assert (
        AnalysisSpec.from_dict(raw, default_prometheus="http://p:9090").prometheus_address == "http://p:9090"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (spec(metrics=[]), "spec.rollout.analysis.metrics must list at least one metric"),
        (spec(metrics="errorRate<=0.01"), "metrics must be a list"),
        (spec(metrics=[{"name": "accuracy", "max": 1}]), "metrics[0].name must be one of"),
        (spec(metrics=[{"name": "errorRate"}]), "metrics[0].max is required for errorRate"),
        (spec(metrics=[{"name": "liveF1", "max": 0.9}]), "metrics[0].max does not apply: higher liveF1"),
        (spec(metrics=[{"name": "errorRate", "min": 0.0}]), "metrics[0].min does not apply: lower errorRate"),
        (spec(metrics=[{"name": "errorRate", "threshold": 0.1}]), "unknown field(s) threshold"),
        (spec(metrics=[{"name": "errorRate", "max": "high"}]), "metrics[0].max must be a number"),
        (spec(metrics=[{"name": "errorRate", "max": 2}]), "analysis.metrics[0].max is a fraction in [0, 1]"),
        (spec(metrics=[{"name": "latencyP99Ms", "max": -1}]), "max must be >= 0"),
        (spec(metrics=[{"name": "errorRate", "max": float("nan")}]), "finite"),
        (spec(metrics=[{"name": "predictionDrift", "max": 0.2, "maxRegression": 0.1}]), "not allowed"),
        (spec(metrics=[{"name": "liveF1", "min": 0.8, "maxRegression": -0.1}]), "maxRegression must"),
        (spec(metrics=[{"name": "liveF1", "min": 0.8, "minSamples": 0}]), "minSamples must be >= 1"),
        (spec(metrics=[METRICS[0], METRICS[0]]), "errorRate more than once"),
        (spec(metrics=[{"name": "errorRate", "max": 0.1, "clientErrors": "some"}]), "excess, all, ignore"),
        (spec(metrics=[{"name": "liveF1", "min": 0.8, "clientErrors": "all"}]), "only applies to errorRate"),
        (spec(metrics=["errorRate"]), "metrics[0] must be an object"),
        (spec(interval="soon"), "interval must be a duration"),
        (spec(interval="0s"), "interval must be a positive duration"),
        (spec(window=True), "window must be a duration"),
        (spec(minSamples=0), "minSamples must be >= 1"),
        (spec(minSamples=1.5), "minSamples must be an integer"),
        (spec(failureLimit=0), "spec.rollout.analysis.failureLimit must be >= 1"),
        (spec(inconclusivePolicy="ignore"), "inconclusivePolicy must be one of hold, extend, fail"),
        (spec(inconclusiveLimit=-1), "inconclusiveLimit must be >= 0"),
        (spec(prometheus={"address": "prom:9090"}), "prometheus.address must be an http(s) URL"),
        (spec(prometheus={"address": "http://p", "timeoutSeconds": 0}), "timeoutSeconds must be > 0"),
        (spec(prometheus="http://p"), "prometheus must be an object"),
        ({"metrics": METRICS}, "prometheus.address is required"),
        (spec(successLimit=3), "spec.rollout.analysis has unknown field(s) successLimit"),
        ([], "spec.rollout.analysis must be an object"),
    ],
)
def test_invalid_specs_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(AnalysisSpecError) as err:
        AnalysisSpec.from_dict(raw)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("30s", 30), ("2m", 120), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), (45, 45), (2.5, 2.5)],
)
def test_parse_duration(raw: object, seconds: float) -> None:
    assert parse_duration(raw, "interval") == seconds


@pytest.mark.parametrize("raw", ["", "30", "30 s", "-5s", "1d", "s", None, [30]])
def test_parse_duration_rejects(raw: object) -> None:
    with pytest.raises(AnalysisSpecError, match="interval"):
        parse_duration(raw, "interval")


@pytest.mark.parametrize(("raw", "policy"), [({}, "excess"), ({"clientErrors": "all"}, "all")])
def test_error_rate_4xx_policy_defaults_to_excess(raw: dict[str, Any], policy: str) -> None:
    parsed = AnalysisSpec.from_dict(spec(metrics=[{"name": "errorRate", "max": 0.01, **raw}]))
    assert parsed.metrics[0].client_errors.value == policy

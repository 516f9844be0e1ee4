"""liveRMSE and liveMAE: regressors judged on the errors of their predictions against the labels that
arrived on /feedback within the window (pure: query text, readings, verdicts; no server)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest
from mlrollout.operator.analysis import (
    Action,
    AnalysisSpec,
    AnalysisSpecError,
    AnalysisState,
    AnalysisTarget,
    MetricKind,
    MetricSpec,
    Quantity,
    QueryFailure,
    Sample,
    Verdict,
    build_queries,
    derive,
    evaluate,
)

TARGET = AnalysisTarget("shop", "price", canary_version="7", stable_version="6")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def track(name: str, value: float) -> Sample:
    return Sample({"track": name}, value)


def test_rmse_queries_select_each_track_by_the_version_that_predicted() -> None:
    queries = build_queries(TARGET, [MetricKind.LIVE_RMSE], 120)
    assert set(queries) == {Quantity.REGRESSION_FEEDBACK, Quantity.SQUARED_ERROR}
    squared = queries[Quantity.SQUARED_ERROR]
    assert "increase(mlrollout_regression_squared_error_total{" in squared
    assert 'model_version="7"' in squared
    assert 'model_version="6"' in squared
    assert 'track="canary"' not in squared  # feedback lands on any pod: the token's version decides
    assert squared.startswith("sum by (track) (label_replace(sum (increase(")
    assert "[2m]" not in squared
    assert "[120s]" in squared
    mae = build_queries(TARGET, [MetricKind.LIVE_MAE], 60)
    assert set(mae) == {Quantity.REGRESSION_FEEDBACK, Quantity.ABSOLUTE_ERROR}
    same = AnalysisTarget("shop", "price", canary_version="7", stable_version="7")
    by_track = build_queries(same, [MetricKind.LIVE_RMSE], 60)[Quantity.SQUARED_ERROR]
    assert 'track="canary"' in by_track
    assert 'track="stable"' in by_track


def test_rmse_and_mae_readings_are_the_window_means() -> None:
    results = {
        Quantity.REGRESSION_FEEDBACK: [track("canary", 100.0), track("stable", 400.0)],
        Quantity.SQUARED_ERROR: [track("canary", 2500.0), track("stable", 400.0)],
        Quantity.ABSOLUTE_ERROR: [track("canary", 450.0), track("stable", 360.0)],
    }
    rmse = derive(MetricKind.LIVE_RMSE, results)
    assert rmse["canary"].value == pytest.approx(5.0)
    assert rmse["canary"].samples == 100
    assert rmse["stable"].value == pytest.approx(1.0)
    assert rmse["stable"].samples == 400
    mae = derive(MetricKind.LIVE_MAE, results)
    assert mae["canary"].value == pytest.approx(4.5)
    assert mae["stable"].value == pytest.approx(0.9)


def test_missing_regression_feedback_is_a_problem_not_a_zero_error() -> None:
    results = {
        Quantity.REGRESSION_FEEDBACK: [track("stable", 50.0)],
        Quantity.SQUARED_ERROR: [track("stable", 50.0)],
    }
    canary = derive(MetricKind.LIVE_RMSE, results)["canary"]
    assert canary.value is None
    assert canary.samples == 0
    assert canary.problem is not None
    assert "no regression feedback series for the canary" in canary.problem
    failed = derive(
        MetricKind.LIVE_RMSE,
        {Quantity.REGRESSION_FEEDBACK: QueryFailure("timeout"), Quantity.SQUARED_ERROR: []},
    )
    assert failed["canary"].problem == "query for regressionFeedback failed: timeout"


def test_a_canary_with_much_worse_rmse_fails_and_rolls_back() -> None:
    spec = AnalysisSpec(
        metrics=(MetricSpec(MetricKind.LIVE_RMSE, 10.0, max_regression=1.0),),
        min_samples=50,
        failure_limit=1,
    )
    results = {
        Quantity.REGRESSION_FEEDBACK: [track("canary", 100.0), track("stable", 100.0)],
        Quantity.SQUARED_ERROR: [track("canary", 100.0 * 36), track("stable", 100.0 * 4)],
    }
    outcome = evaluate(spec, results, AnalysisState(), NOW)
    (m,) = outcome.measurements
    assert (outcome.verdict, outcome.action) == (Verdict.FAILED, Action.ROLLBACK)
    assert m.value == pytest.approx(6.0)
    assert m.stable_value == pytest.approx(2.0)
    assert m.threshold == pytest.approx(3.0)  # stable 2 + maxRegression 1, stricter than 10
    assert m.reason == "liveRMSE 6 > 3 (stable 2 + maxRegression 1; 100 feedback labels)"
    good = {**results, Quantity.SQUARED_ERROR: [track("canary", 100.0 * 4.4), track("stable", 400.0)]}
    passed = evaluate(spec, good, AnalysisState(), NOW)
    assert passed.verdict is Verdict.PASSED
    assert math.isclose(passed.measurements[0].value or 0.0, math.sqrt(4.4))


def test_few_labels_are_inconclusive_never_a_pass() -> None:
    spec = AnalysisSpec(metrics=(MetricSpec(MetricKind.LIVE_MAE, 1.0),), min_samples=50)
    results = {
        Quantity.REGRESSION_FEEDBACK: [track("canary", 10.0), track("stable", 10.0)],
        Quantity.ABSOLUTE_ERROR: [track("canary", 1.0), track("stable", 1.0)],
    }
    (m,) = evaluate(spec, results, AnalysisState(), NOW).measurements
    assert m.verdict is Verdict.INCONCLUSIVE
    assert m.reason == "liveMAE: canary has 10 feedback labels, below minSamples 50"


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (
            {"name": "liveRMSE", "min": 1.0},
            "metrics[0].min does not apply: lower liveRMSE is better, so set max",
        ),
        ({"name": "liveMAE"}, "metrics[0].max is required for liveMAE"),
        ({"name": "liveRMSE", "max": -1.0}, "metrics[0].max must be >= 0"),
    ],
)
def test_spec_takes_max_for_regression_errors(metric: dict[str, object], message: str) -> None:
    raw = {"prometheus": {"address": "http://prometheus:9090"}, "metrics": [metric]}
    with pytest.raises(AnalysisSpecError, match="^" + re.escape("spec.rollout.analysis." + message)):
        AnalysisSpec.from_dict(raw)


def test_spec_accepts_thresholds_in_the_targets_unit() -> None:
    raw = {
        "prometheus": {"address": "http://prometheus:9090"},
        "metrics": [
            {"name": "liveRMSE", "max": 2500.0, "maxRegression": 100},
            {"name": "liveMAE", "max": 40},
        ],
    }
    spec = AnalysisSpec.from_dict(raw)
    assert [(m.kind, m.threshold, m.max_regression) for m in spec.metrics] == [
        (MetricKind.LIVE_RMSE, 2500.0, 100.0),
        (MetricKind.LIVE_MAE, 40.0, None),
    ]

"""Shadow-step analysis (pure): the agreement metric, the canary's error rate and latency read from
the stable pods' shadow series, and which metrics are measured in and outside a shadow step."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mlrollout.operator.analysis import (
    AnalysisSpec,
    AnalysisState,
    AnalysisTarget,
    MetricKind,
    Quantity,
    Sample,
    Verdict,
    build_queries,
    derive,
    evaluate,
)
from mlrollout.operator.analysis.schedule import Due, NotDue, next_analysis
from mlrollout.operator.analysis.spec import AnalysisSpecError, applies
from mlrollout.operator.model import Status, Track

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PROM = "http://prometheus:9090"
LIVE = AnalysisTarget("shop", "churn", canary_version="7", stable_version="6")
SHADOW = AnalysisTarget("shop", "churn", canary_version="7", stable_version="6", shadow=True)
METRICS = [
    {"name": "agreement", "min": 0.95},
    {"name": "errorRate", "max": 0.01},
    {"name": "latencyP99Ms", "max": 200},
    {"name": "liveF1", "min": 0.8},
]


def rows(agree: float, disagree: float) -> list[Sample]:
    return [Sample({"result": "agree"}, agree), Sample({"result": "disagree"}, disagree)]


def test_agreement_query_selects_the_stable_pods_shadow_series_by_version() -> None:
    q = build_queries(LIVE, [MetricKind.AGREEMENT], 60)
    assert q == {
        Quantity.SHADOW_ROWS: 'sum by (result) (increase(mlrollout_shadow_rows_total{namespace="shop", '
        'model_deployment="churn", shadow_version="7"}[60s]))'
    }


def test_during_shadow_the_canary_side_of_error_rate_and_latency_is_the_copies() -> None:
    q = build_queries(SHADOW, [MetricKind.ERROR_RATE, MetricKind.LATENCY_P99_MS], 60)
    assert q[Quantity.REQUESTS] == (
        "sum by (track) (label_replace(sum (increase(mlrollout_shadow_requests_total{"
        'namespace="shop", model_deployment="churn", shadow_version="7", '
        'outcome!~"dropped|not_ready"}[60s])), '
        '"track", "canary", "", "") '
        'or increase(mlrollout_requests_total{namespace="shop", model_deployment="churn", track="stable", '
        'model_version="6", endpoint=~"invocations|infer"}[60s]))'
    )
    assert 'outcome!~"answered|dropped|not_ready"' in q[Quantity.ERRORS]
    assert "mlrollout_shadow" not in q[Quantity.CLIENT_ERRORS]  # the canary's 4xx are errors already
    assert "sum by (le) (rate(mlrollout_shadow_duration_seconds_bucket{" in q[Quantity.LATENCY_P99]
    assert "mlrollout_shadow_duration_seconds_count" in q[Quantity.LATENCY_COUNT]
    live = build_queries(LIVE, [MetricKind.ERROR_RATE], 60)
    assert "mlrollout_shadow" not in live[Quantity.REQUESTS]


def test_agreement_reading() -> None:
    readings = derive(MetricKind.AGREEMENT, {Quantity.SHADOW_ROWS: rows(990, 10)})
    assert readings["canary"].value == pytest.approx(0.99)
    assert readings["canary"].samples == 1000
    assert readings["stable"].value is None  # nothing of its own: agreement is canary vs stable
    empty = derive(MetricKind.AGREEMENT, {Quantity.SHADOW_ROWS: []})["canary"]
    assert empty.value is None
    assert "no shadow comparisons" in (empty.problem or "")


@pytest.mark.parametrize(
    ("agree", "disagree", "verdict"),
    [(999, 1, Verdict.PASSED), (500, 500, Verdict.FAILED), (40, 0, Verdict.INCONCLUSIVE)],
)
def test_agreement_verdicts_with_min_samples(agree: float, disagree: float, verdict: Verdict) -> None:
    spec = AnalysisSpec.from_dict(
        {"minSamples": 100, "metrics": [{"name": "agreement", "min": 0.95}]}, default_prometheus=PROM
    )
    outcome = evaluate(spec, {Quantity.SHADOW_ROWS: rows(agree, disagree)}, AnalysisState(), NOW)
    assert outcome.verdict is verdict
    if verdict is Verdict.INCONCLUSIVE:
        assert "canary has 40 rows compared, below minSamples 100" in outcome.reason


def test_agreement_spec_is_validated() -> None:
    with pytest.raises(AnalysisSpecError, match="fraction"):
        AnalysisSpec.from_dict({"metrics": [{"name": "agreement", "min": 1.5}]}, default_prometheus=PROM)
    with pytest.raises(AnalysisSpecError, match="maxRegression is not allowed"):
        AnalysisSpec.from_dict(
            {"metrics": [{"name": "agreement", "min": 0.9, "maxRegression": 0.1}]}, default_prometheus=PROM
        )


def test_which_metrics_apply() -> None:
    shadow = {k for k in MetricKind if applies(k, shadow=True)}
    assert shadow == {MetricKind.AGREEMENT, MetricKind.ERROR_RATE, MetricKind.LATENCY_P99_MS}
    assert {k for k in MetricKind if applies(k, shadow=False)} == set(MetricKind) - {MetricKind.AGREEMENT}


def canary_status() -> Status:
    stable = Track(version="6", model_uri="m:/6", deployment="churn-v6")
    return Status(stable=stable, canary=Track(version="7", model_uri="m:/7", deployment="churn-v7"))


def test_a_shadow_step_measures_only_its_metrics_and_later_steps_the_rest() -> None:
    raw = {"prometheus": {"address": "http://p:9090"}, "metrics": METRICS}
    during = next_analysis("shop", "churn", raw, canary_status(), NOW, shadow=True)
    assert isinstance(during, Due)
    assert during.target.shadow
    assert [m.kind for m in during.spec.metrics] == [
        MetricKind.AGREEMENT,
        MetricKind.ERROR_RATE,
        MetricKind.LATENCY_P99_MS,
    ]
    after = next_analysis("shop", "churn", raw, canary_status(), NOW)
    assert isinstance(after, Due)
    assert not after.target.shadow
    assert [m.kind for m in after.spec.metrics] == [
        MetricKind.ERROR_RATE,
        MetricKind.LATENCY_P99_MS,
        MetricKind.LIVE_F1,
    ]
    only_agreement = {**raw, "metrics": METRICS[:1]}
    skipped = next_analysis("shop", "churn", only_agreement, canary_status(), NOW)
    assert isinstance(skipped, NotDue)  # no run: the shadow step's verdict stays the latest one
    assert skipped.reason == "no metric of spec.rollout.analysis is measured outside shadow steps"

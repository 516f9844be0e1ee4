"""PromQL building, query-result parsing and derivation of per-track readings (pure, no server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from mlrollout.operator.analysis import (
    Action,
    AnalysisSpec,
    AnalysisState,
    AnalysisTarget,
    ClientErrors,
    MetricKind,
    MetricSpec,
    PrometheusError,
    Quantity,
    QueryFailure,
    Sample,
    SeriesNames,
    Verdict,
    build_queries,
    derive,
    evaluate,
)
from mlrollout.operator.analysis.metrics import AnalysisMetrics
from mlrollout.operator.analysis.prometheus import parse_response
from mlrollout.operator.analysis.promql import format_window, quote
from prometheus_client import CollectorRegistry

TARGET = AnalysisTarget("shop", "churn", canary_version="7", stable_version="6")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_queries_cover_only_what_the_metrics_need() -> None:
    assert set(build_queries(TARGET, [MetricKind.LIVE_F1], 60)) == {Quantity.FEEDBACK}
    assert set(build_queries(TARGET, list(MetricKind), 60)) == set(Quantity)


def test_request_query_pins_tracks_versions_and_inference_endpoints() -> None:
    q = build_queries(TARGET, [MetricKind.ERROR_RATE], 90)
    canary = (
        'namespace="shop", model_deployment="churn", track="canary", model_version="7", '
        'endpoint=~"invocations|infer"'
    )
    assert q[Quantity.REQUESTS] == (
        f"sum by (track) (increase(mlrollout_requests_total{{{canary}}}[90s]) or "
        f"increase(mlrollout_requests_total{{{canary.replace('canary', 'stable').replace('7', '6')}}}[90s]))"
    )
    assert 'status=~"5.."' in q[Quantity.ERRORS]


def test_latency_query_is_a_quantile_over_buckets_by_track() -> None:
    q = build_queries(AnalysisTarget("ns", "md"), [MetricKind.LATENCY_P99_MS], 30)
    assert q[Quantity.LATENCY_P99].startswith("histogram_quantile(0.99, sum by (track, le) (rate(")
    assert "mlrollout_request_duration_seconds_bucket{" in q[Quantity.LATENCY_P99]
    assert "model_version" not in q[Quantity.LATENCY_P99]  # no version pinned: tracks only
    assert "mlrollout_request_duration_seconds_count{" in q[Quantity.LATENCY_COUNT]


def test_series_names_are_configurable() -> None:
    names = SeriesNames(predictions="serve_predictions_total", class_label="label", inference_endpoints=None)
    q = build_queries(TARGET, [MetricKind.PREDICTION_DRIFT, MetricKind.ERROR_RATE], 60, names)
    assert q[Quantity.PREDICTIONS].startswith("sum by (track, label) (increase(serve_predictions_total{")
    assert "endpoint" not in q[Quantity.REQUESTS]


def test_label_values_are_escaped_and_windows_formatted() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert (format_window(60), format_window(2.5), format_window(0.25)) == ("60s", "2500ms", "250ms")
    with pytest.raises(ValueError, match="window"):
        format_window(0)


def vec(*items: tuple[dict[str, str], float]) -> list[Sample]:
    return [Sample(labels, value) for labels, value in items]


def c(**labels: str) -> dict[str, str]:
    return {"track": "canary", **labels}


def s(**labels: str) -> dict[str, str]:
    return {"track": "stable", **labels}


def test_error_rate_readings() -> None:
    results = {
        Quantity.REQUESTS: vec((c(), 200.4), (s(), 1800.0)),
        Quantity.ERRORS: vec((c(), 20.04)),  # stable has no 5xx series at all: zero errors
        Quantity.CLIENT_ERRORS: [],  # nor 4xx
    }
    r = derive(MetricKind.ERROR_RATE, results)
    assert (r["canary"].value, r["canary"].samples) == (pytest.approx(0.1), 200)
    assert (r["stable"].value, r["stable"].samples, r["stable"].problem) == (0.0, 1800, None)


@pytest.mark.parametrize(
    ("policy", "canary_4xx", "stable_4xx", "canary", "stable"),
    [
        # a canary that refuses every request (a signature change breaks every client) fails by default
        (ClientErrors.EXCESS, 100.0, 0.0, 0.95, 0.0),  # above stable's share plus the 5% margin
        # clients' bad input, refused by both tracks alike, is not the canary's fault
        (ClientErrors.EXCESS, 10.0, 10.0, 0.0, 0.0),
        (ClientErrors.EXCESS, 30.0, 10.0, 0.15, 0.0),  # only the excess beyond the margin counts
        (ClientErrors.EXCESS, 3.0, 0.0, 0.0, 0.0),  # a few bad requests that happened to hit the canary
        (ClientErrors.ALL, 10.0, 10.0, 0.1, 0.1),
        (ClientErrors.IGNORE, 100.0, 0.0, 0.0, 0.0),  # 5xx only
    ],
)
def test_error_rate_counts_4xx_by_policy(
    policy: ClientErrors, canary_4xx: float, stable_4xx: float, canary: float, stable: float
) -> None:
    results = {
        Quantity.REQUESTS: vec((c(), 100.0), (s(), 100.0)),
        Quantity.ERRORS: [],
        Quantity.CLIENT_ERRORS: vec((c(), canary_4xx), (s(), stable_4xx)),
    }
    r = derive(MetricKind.ERROR_RATE, results, client_errors=policy)
    assert (r["canary"].value, r["stable"].value) == (pytest.approx(canary), pytest.approx(stable))


def test_excess_4xx_without_stable_traffic_counts_canary_4xx_beyond_the_margin() -> None:
    results = {
        Quantity.REQUESTS: vec((c(), 100.0)),
        Quantity.ERRORS: [],
        Quantity.CLIENT_ERRORS: vec((c(), 40.0)),
    }
    assert derive(MetricKind.ERROR_RATE, results)["canary"].value == pytest.approx(0.35)


def test_live_f1_counts_feedback_by_the_version_that_predicted() -> None:
    """Feedback through the one Service lands on any pod: serving counts it under the token's
    version, so each track's confusion counts are selected by version, not by receiving track."""
    query = build_queries(TARGET, [MetricKind.LIVE_F1], 60)[Quantity.FEEDBACK]
    assert 'model_version="7"' in query
    assert 'model_version="6"' in query
    assert 'track="canary"' not in query
    assert "label_replace(sum by (predicted, actual) (increase(mlrollout_feedback_total{" in query
    assert query.startswith("sum by (track, predicted, actual) (")
    same = AnalysisTarget("shop", "churn", canary_version="7", stable_version="7")
    by_track = build_queries(same, [MetricKind.LIVE_F1], 60)[Quantity.FEEDBACK]
    assert 'track="canary"' in by_track  # one version on both tracks: only the track tells them apart


def test_error_rate_query_for_4xx_pins_the_status_class() -> None:
    query = build_queries(TARGET, [MetricKind.ERROR_RATE], 60)[Quantity.CLIENT_ERRORS]
    assert 'status=~"4.."' in query
    assert 'endpoint=~"invocations|infer"' in query


def test_no_series_is_a_problem_not_a_zero() -> None:
    r = derive(MetricKind.ERROR_RATE, {Quantity.REQUESTS: vec((s(), 10.0)), Quantity.ERRORS: []})
    assert r["canary"].problem is not None
    assert "no request series for the canary track" in r["canary"].problem
    zero = derive(MetricKind.ERROR_RATE, {Quantity.REQUESTS: vec((c(), 0.0)), Quantity.ERRORS: []})["canary"]
    assert (zero.value, zero.samples, zero.problem) == (None, 0, None)


def test_query_failures_carry_their_reason() -> None:
    failure = QueryFailure("Prometheus at http://p unreachable: refused")
    for kind in MetricKind:
        results = dict.fromkeys(Quantity, failure)
        for reading in derive(kind, results).values():
            assert reading.problem is not None
            assert "unreachable: refused" in reading.problem


def test_latency_readings_in_milliseconds() -> None:
    results = {
        Quantity.LATENCY_COUNT: vec((c(), 300.0), (s(), 900.0)),
        Quantity.LATENCY_P99: vec((c(), 0.25), (s(), float("nan"))),
    }
    r = derive(MetricKind.LATENCY_P99_MS, results)
    assert (r["canary"].value, r["canary"].samples) == (250.0, 300)
    assert r["stable"].value is None  # NaN: no observations


def test_live_f1_and_drift_readings() -> None:
    feedback = vec(
        (c(predicted="1", actual="1"), 40.0),
        (c(predicted="0", actual="0"), 40.0),
        (c(predicted="1", actual="0"), 20.0),
        (s(predicted="0", actual="0"), 50.0),
    )
    f1 = derive(MetricKind.LIVE_F1, {Quantity.FEEDBACK: feedback})
    assert f1["canary"].samples == 100
    assert 0.7 < (f1["canary"].value or 0) < 0.85
    assert f1["stable"].value == 1.0
    same = vec(
        (c(**{"class": "0"}), 50.0),
        (c(**{"class": "1"}), 50.0),
        (s(**{"class": "0"}), 500.0),
        (s(**{"class": "1"}), 500.0),
    )
    drift = derive(MetricKind.PREDICTION_DRIFT, {Quantity.PREDICTIONS: same})
    assert drift["canary"].value == pytest.approx(0.0, abs=1e-9)
    assert drift["stable"].samples == 1000
    lonely = derive(MetricKind.PREDICTION_DRIFT, {Quantity.PREDICTIONS: vec((s(**{"class": "0"}), 9.0))})
    assert lonely["canary"].problem is not None
    assert lonely["canary"].value is None


def test_evaluate_end_to_end_on_results() -> None:
    spec = AnalysisSpec(
        metrics=(MetricSpec(MetricKind.ERROR_RATE, 0.05), MetricSpec(MetricKind.LIVE_F1, 0.8)),
        min_samples=50,
        failure_limit=1,
    )
    results = {
        Quantity.REQUESTS: vec((c(), 100.0), (s(), 100.0)),
        Quantity.ERRORS: vec((c(), 30.0)),
        Quantity.CLIENT_ERRORS: [],
        Quantity.FEEDBACK: QueryFailure("timeout"),
    }
    outcome = evaluate(spec, results, AnalysisState(), NOW)
    assert (outcome.verdict, outcome.action) == (Verdict.FAILED, Action.ROLLBACK)
    assert [m.verdict for m in outcome.measurements] == [Verdict.FAILED, Verdict.INCONCLUSIVE]
    registry = CollectorRegistry()
    metrics = AnalysisMetrics(registry)
    metrics.record(TARGET, outcome)
    labels = {"namespace": "shop", "model_deployment": "churn"}
    assert registry.get_sample_value(
        "mlrollout_analysis_measurement", {**labels, "metric": "errorRate", "track": "canary"}
    ) == pytest.approx(0.3)
    assert (
        registry.get_sample_value(
            "mlrollout_analysis_runs_total", {**labels, "verdict": "Failed", "action": "Rollback"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "mlrollout_analysis_metric_verdicts_total",
            {**labels, "metric": "liveF1", "verdict": "Inconclusive"},
        )
        == 1
    )
    assert registry.get_sample_value("mlrollout_analysis_consecutive_failures", labels) == 1
    metrics.forget("shop", "churn")
    assert registry.get_sample_value("mlrollout_analysis_consecutive_failures", labels) is None


def test_parse_response_vector_scalar_and_errors() -> None:
    ok = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"track": "canary"}, "value": [1, "3.5"]},
                {"metric": {}, "value": [1, "NaN"]},
            ],
        },
    }
    samples = parse_response(200, json.dumps(ok))
    assert samples[0] == Sample({"track": "canary"}, 3.5)
    assert samples[1].value != samples[1].value
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1, "+Inf"]}}
    assert parse_response(200, json.dumps(scalar))[0].value == float("inf")
    bad = [
        (400, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}), "bad_data"),
        (502, "<html>bad gateway</html>", "non-JSON"),
        (200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}), "matrix"),
        (
            200,
            json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{}]}}),
            "malformed",
        ),
        (200, json.dumps([1]), "unexpected JSON"),
    ]
    for status, text, message in bad:
        with pytest.raises(PrometheusError, match=message):
            parse_response(status, text)

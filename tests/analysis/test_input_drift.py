"""inputDrift: live inputs in the training profile's bins against the profile's reference shares, PSI
per feature, the worst feature named in the verdict; no profile logged is Inconclusive with that
reason, never a pass (pure: query text, readings, verdicts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mlrollout.operator.analysis import (
    AnalysisSpec,
    AnalysisSpecError,
    AnalysisState,
    AnalysisTarget,
    MetricKind,
    MetricSpec,
    Quantity,
    Sample,
    Verdict,
    build_queries,
    derive,
    evaluate,
)
from mlrollout.operator.analysis.signals import psi

TARGET = AnalysisTarget("shop", "churn", canary_version="7", stable_version="6")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
REFERENCE = {"tenure": {"0": 0.25, "1": 0.25, "2": 0.25, "3": 0.25, "__missing__": 0.0},
             "plan": {"basic": 0.5, "premium": 0.5, "__other__": 0.0, "__missing__": 0.0}}  # fmt: skip


def samples(track: str, table: dict[str, dict[str, float]]) -> list[Sample]:
    return [
        Sample({"track": track, "feature": f, "bin": b}, v)
        for f, bins in table.items()
        for b, v in bins.items()
    ]


def results(
    canary_bins: dict[str, dict[str, float]], *, profiled: float = 2.0
) -> dict[Quantity, list[Sample]]:
    stable_bins = {f: {b: 100 * s for b, s in bins.items()} for f, bins in REFERENCE.items()}
    return {
        Quantity.INPUT_PROFILED: [Sample({"track": "canary"}, profiled), Sample({"track": "stable"}, 2.0)],
        Quantity.INPUT_REFERENCE: samples("canary", REFERENCE) + samples("stable", REFERENCE),
        Quantity.INPUT_BINS: samples("canary", canary_bins) + samples("stable", stable_bins),
    }


SPEC = AnalysisSpec(metrics=(MetricSpec(MetricKind.INPUT_DRIFT, 0.2),), min_samples=50, failure_limit=1)
UNSHIFTED = {"tenure": {"0": 26, "1": 24, "2": 25, "3": 25}, "plan": {"basic": 52, "premium": 48}}
SHIFTED = {"tenure": {"3": 100}, "plan": {"basic": 50, "premium": 50}}  # every tenure in the top bin


def test_queries_read_bins_reference_and_profile_per_track() -> None:
    queries = build_queries(TARGET, [MetricKind.INPUT_DRIFT], 60)
    assert set(queries) == {Quantity.INPUT_BINS, Quantity.INPUT_REFERENCE, Quantity.INPUT_PROFILED}
    assert queries[Quantity.INPUT_BINS].startswith(
        "sum by (track, feature, bin) (increase(mlrollout_input_bin_total{"
    )
    assert 'model_version="7"' in queries[Quantity.INPUT_BINS]
    assert queries[Quantity.INPUT_REFERENCE].startswith(
        "max by (track, feature, bin) (mlrollout_input_reference_share{"
    )
    assert "[60s]" not in queries[Quantity.INPUT_REFERENCE]  # a gauge: read at the evaluation time
    assert queries[Quantity.INPUT_PROFILED].startswith("max by (track) (mlrollout_input_profile_features{")


def test_unshifted_inputs_pass_and_shifted_ones_fail_naming_the_feature() -> None:
    passed = evaluate(SPEC, results(UNSHIFTED), AnalysisState(), NOW)
    assert passed.verdict is Verdict.PASSED, passed.measurements[0].reason
    assert passed.measurements[0].samples == 100
    failed = evaluate(SPEC, results(SHIFTED), AnalysisState(), NOW)
    (m,) = failed.measurements
    assert m.verdict is Verdict.FAILED
    expected = psi({"0": 0, "1": 0, "2": 0, "3": 100, "__missing__": 0}, REFERENCE["tenure"])
    assert m.value == pytest.approx(expected)
    assert m.reason.startswith(f"inputDrift {expected:.4g} > 0.2 (absolute; 100 rows; worst feature 'tenure'")


def test_a_feature_turning_missing_is_drift() -> None:
    missing = {"tenure": {"__missing__": 60, "1": 40}, "plan": {"basic": 50, "premium": 50}}
    (m,) = evaluate(SPEC, results(missing), AnalysisState(), NOW).measurements
    assert m.verdict is Verdict.FAILED
    assert "worst feature 'tenure'" in m.reason


def test_no_profile_is_inconclusive_with_the_reason() -> None:
    (m,) = evaluate(SPEC, results(UNSHIFTED, profiled=0), AnalysisState(), NOW).measurements
    assert m.verdict is Verdict.INCONCLUSIVE
    assert "the canary version logged no training profile (metadata mlrollout_profile" in m.reason


def test_no_traffic_is_inconclusive_not_a_zero_drift() -> None:
    readings = derive(
        MetricKind.INPUT_DRIFT, {**results(UNSHIFTED), Quantity.INPUT_BINS: samples("stable", UNSHIFTED)}
    )
    assert (
        readings["canary"].problem == "no input bin series for the canary track (no traffic or not scraped)"
    )
    assert readings["stable"].value is not None


def test_input_drift_takes_max_and_no_max_regression() -> None:
    raw = {
        "prometheus": {"address": "http://p:9090"},
        "metrics": [{"name": "inputDrift", "max": 0.2, "maxRegression": 0.1}],
    }
    with pytest.raises(
        AnalysisSpecError, match="maxRegression is not allowed: input drift compares with the training"
    ):
        AnalysisSpec.from_dict(raw)

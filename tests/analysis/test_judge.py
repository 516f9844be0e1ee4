"""Per-metric verdicts, run verdicts, and the failure/inconclusive bookkeeping, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mlrollout.operator.analysis import (
    Action,
    AnalysisSpec,
    AnalysisState,
    Direction,
    InconclusivePolicy,
    Measurement,
    MetricKind,
    MetricSpec,
    Reading,
    Verdict,
    combine,
    judge,
    measure,
)
from mlrollout.operator.analysis.spec import DIRECTIONS

P, F, INC = Verdict.PASSED, Verdict.FAILED, Verdict.INCONCLUSIVE
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OK = Reading(0.0, 500)

ERR = MetricSpec(MetricKind.ERROR_RATE, 0.01)
ERR_REL = MetricSpec(MetricKind.ERROR_RATE, 0.05, max_regression=0.01)
LAT_REL = MetricSpec(MetricKind.LATENCY_P99_MS, 200, max_regression=50)
F1 = MetricSpec(MetricKind.LIVE_F1, 0.8)
F1_REL = MetricSpec(MetricKind.LIVE_F1, 0.7, max_regression=0.05)
DRIFT = MetricSpec(MetricKind.PREDICTION_DRIFT, 0.2)


@pytest.mark.parametrize(
    ("spec", "canary", "stable", "verdict", "threshold", "reason"),
    [
        # absolute thresholds, both directions, boundary included
        (ERR, Reading(0.005, 500), OK, P, 0.01, "errorRate 0.005 <= 0.01 (absolute; 500 requests)"),
        (ERR, Reading(0.01, 500), OK, P, 0.01, "<= 0.01"),
        (ERR, Reading(0.2, 500), OK, F, 0.01, "errorRate 0.2 > 0.01"),
        (F1, Reading(0.9, 100), OK, P, 0.8, "liveF1 0.9 >= 0.8"),
        (F1, Reading(0.3, 100), OK, F, 0.8, "liveF1 0.3 < 0.8 (absolute; 100 feedback labels)"),
        # too few samples: inconclusive even when the value looks perfect
        (ERR, Reading(0.0, 99), OK, INC, 0.01, "canary has 99 requests, below minSamples 100"),
        (F1, Reading(1.0, 3), OK, INC, 0.8, "canary has 3 feedback labels"),
        (ERR, Reading(None, 0, "no request series for the canary track"), OK, INC, 0.01, "no request series"),
        (ERR, Reading(None, 0, "query for requests failed: unreachable"), OK, INC, 0.01, "unreachable"),
        (ERR, Reading(None, 100), OK, INC, 0.01, "no canary value"),
        # relative to stable: the stricter threshold wins
        (ERR_REL, Reading(0.02, 500), Reading(0.005, 900), F, 0.015, "stable 0.005 + maxRegression 0.01"),
        (ERR_REL, Reading(0.012, 500), Reading(0.005, 900), P, 0.015, "<= 0.015"),
        (ERR_REL, Reading(0.045, 500), Reading(0.2, 900), P, 0.05, "(absolute;"),
        (LAT_REL, Reading(180, 500), Reading(100, 900), F, 150, "latencyP99Ms 180 > 150"),
        (LAT_REL, Reading(float("inf"), 500), Reading(100, 900), F, 150, "inf > 150"),
        (F1_REL, Reading(0.8, 100), Reading(0.9, 900), F, 0.85, "stable 0.9 - maxRegression 0.05"),
        (F1_REL, Reading(0.72, 100), Reading(0.6, 900), P, 0.7, "(absolute;"),
        # relative thresholds need a trustworthy stable value
        (F1_REL, Reading(0.9, 100), Reading(0.9, 10), INC, 0.7, "stable has 10 feedback labels"),
        (F1_REL, Reading(0.9, 100), Reading(None, 0, "no feedback series"), INC, 0.7, "series"),
        # drift needs both tracks
        (DRIFT, Reading(0.05, 500), Reading(None, 800), P, 0.2, "predictionDrift 0.05 <= 0.2"),
        (DRIFT, Reading(0.6, 500), Reading(None, 800), F, 0.2, "predictionDrift 0.6 > 0.2"),
        (DRIFT, Reading(None, 500), Reading(None, 40), INC, 0.2, "stable has 40 predictions, below"),
    ],
)
def test_measure(
    spec: MetricSpec, canary: Reading, stable: Reading, verdict: Verdict, threshold: float, reason: str
) -> None:
    m = measure(spec, canary, stable, min_samples=100 if spec.kind is not MetricKind.LIVE_F1 else 50)
    assert (m.verdict, m.threshold) == (verdict, pytest.approx(threshold))
    assert reason in m.reason
    assert m.direction is DIRECTIONS[spec.kind]
    assert m.samples == canary.samples


def test_measurement_status_is_json_safe() -> None:
    m = measure(LAT_REL, Reading(float("inf"), 500), Reading(100, 900), 100)
    status = m.to_status()
    assert status == {
        "value": None,
        "stableValue": 100,
        "threshold": 150,
        "direction": "<=",
        "samples": 500,
        "verdict": "Failed",
        "reason": m.reason,
    }


def _m(verdict: Verdict, name: str = "x") -> Measurement:
    return Measurement(MetricKind.ERROR_RATE, verdict, 0.0, 0.01, Direction.AT_MOST, 100, f"{name} {verdict}")


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [([P], P), ([P, P, P], P), ([P, INC], INC), ([INC, INC], INC), ([P, F], F), ([INC, F], F), ([F, F], F)],
)
def test_combine(verdicts: list[Verdict], expected: Verdict) -> None:
    verdict, reason = combine([_m(v, f"m{i}") for i, v in enumerate(verdicts)])
    assert verdict is expected
    assert all(f"m{i}" in reason for i, v in enumerate(verdicts) if v is expected)


def test_combine_needs_measurements() -> None:
    with pytest.raises(ValueError, match="without measurements"):
        combine([])


def _run(
    policy: InconclusivePolicy, verdicts: list[Verdict], failure_limit: int = 2, limit: int = 2
) -> list[Action]:
    spec = AnalysisSpec(
        metrics=(ERR,), failure_limit=failure_limit, inconclusive_policy=policy, inconclusive_limit=limit
    )
    state, actions = AnalysisState(), []
    for i, v in enumerate(verdicts):
        outcome = judge(spec, [_m(v)], state, NOW + timedelta(seconds=30 * i))
        assert outcome.state.runs == i + 1
        assert outcome.state.last_verdict is v
        state = outcome.state
        actions.append(outcome.action)
    return actions


H, R, GO = Action.HOLD, Action.ROLLBACK, Action.PROCEED
HOLD, EXTEND, FAIL = InconclusivePolicy.HOLD, InconclusivePolicy.EXTEND, InconclusivePolicy.FAIL


@pytest.mark.parametrize(
    ("policy", "verdicts", "actions"),
    [
        (HOLD, [P], [GO]),
        (HOLD, [F, F], [H, R]),
        (HOLD, [F, P, F], [H, GO, H]),  # a pass resets the streak
        (HOLD, [F, INC, INC, F], [H, H, H, R]),  # an outage between failures does not reset it
        (HOLD, [INC] * 6, [H] * 6),  # hold never gives up on its own, never passes
        (EXTEND, [INC, INC, INC, INC], [H, H, H, R]),  # limit 2: 3rd and 4th count as failures
        (EXTEND, [INC, INC, P, INC, INC, INC], [H, H, GO, H, H, H]),
        (FAIL, [INC, INC], [H, R]),
        (FAIL, [INC, P, INC], [H, GO, H]),
    ],
)
def test_actions_over_runs(
    policy: InconclusivePolicy, verdicts: list[Verdict], actions: list[Action]
) -> None:
    assert _run(policy, verdicts) == actions


def test_failure_limit_one_rolls_back_at_once() -> None:
    assert _run(HOLD, [F], failure_limit=1) == [R]


def test_outcome_reports_change_events_and_status() -> None:
    spec = AnalysisSpec(metrics=(ERR,))
    first = judge(spec, [_m(F)], AnalysisState(), NOW)
    assert first.verdict_changed
    assert first.event()[:2] == ("Warning", "AnalysisFailed")
    assert "failure 1 of 2" in first.reason
    second = judge(spec, [_m(F)], first.state, NOW + timedelta(seconds=30))
    assert not second.verdict_changed
    assert second.action is R
    third = judge(spec, [_m(P)], second.state, NOW + timedelta(seconds=60))
    assert third.verdict_changed
    assert third.event()[:2] == ("Normal", "AnalysisPassed")
    status = second.to_status("7")
    assert status == {
        "canaryVersion": "7",
        "verdict": "Failed",
        "action": "Rollback",
        "message": second.reason,
        "evaluatedAt": "2026-01-01T12:00:30Z",
        "consecutiveFailures": 2,
        "consecutiveInconclusive": 0,
        "runs": 2,
        "metrics": {"errorRate": second.measurements[0].to_status()},
    }
    # The next run of the same canary continues the count; a new canary starts afresh.
    assert AnalysisState.from_status(status, "7") == second.state
    assert AnalysisState.from_status(status, "8") == AnalysisState()


def test_state_round_trips_through_status_and_schedules_runs() -> None:
    state = AnalysisState(2, 1, 7, Verdict.INCONCLUSIVE, NOW)
    assert AnalysisState.from_status(state.to_status()) == state
    assert state.to_status()["evaluatedAt"] == "2026-01-01T12:00:00Z"
    assert AnalysisState.from_status(None) == AnalysisState() == AnalysisState.from_status({})
    assert AnalysisState().is_due(NOW, 30)
    assert not state.is_due(NOW + timedelta(seconds=29), 30)
    assert state.is_due(NOW + timedelta(seconds=30), 30)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"consecutiveFailures": -1}, "consecutiveFailures must be an integer >= 0"),
        ({"runs": "3"}, "runs must be an integer"),
        ({"verdict": "Maybe"}, "verdict is not a verdict"),
        ({"evaluatedAt": "yesterday"}, "evaluatedAt is not an ISO 8601 time"),
        ({"evaluatedAt": "2026-01-01T12:00:00"}, "needs a timezone"),
    ],
)
def test_state_rejects_corrupt_status(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnalysisState.from_status(raw)

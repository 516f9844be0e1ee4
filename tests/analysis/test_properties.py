"""Properties that must hold for every input: thin or missing data never passes, PSI is a proper
divergence, and the run bookkeeping only rolls back at the failure limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
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
    judge,
    macro_f1,
    measure,
    psi,
)

finite = st.floats(min_value=0, max_value=1e4, allow_nan=False)
values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
readings = st.builds(
    Reading, value=values, samples=st.integers(0, 10_000), problem=st.one_of(st.none(), st.just("down"))
)


@st.composite
def metric_specs(draw: st.DrawFn) -> MetricSpec:
    kind = draw(st.sampled_from(list(MetricKind)))
    bounded = kind in (MetricKind.ERROR_RATE, MetricKind.LIVE_F1, MetricKind.AGREEMENT)
    threshold = draw(st.floats(0, 1) if bounded else finite)
    # drifts and agreement have their own base
    relative = kind not in (MetricKind.PREDICTION_DRIFT, MetricKind.INPUT_DRIFT, MetricKind.AGREEMENT)
    regression = draw(st.one_of(st.none(), finite)) if relative else None
    return MetricSpec(kind, threshold, regression)


@settings(max_examples=300, deadline=None)
@given(spec=metric_specs(), canary=readings, stable=readings, min_samples=st.integers(1, 5000))
def test_thin_or_missing_data_never_passes(
    spec: MetricSpec, canary: Reading, stable: Reading, min_samples: int
) -> None:
    m = measure(spec, canary, stable, min_samples)
    if m.verdict is Verdict.PASSED:
        assert canary.problem is None
        assert canary.samples >= min_samples
        assert canary.value is not None
        assert spec.direction.holds(canary.value, m.threshold)
        assert m.threshold == spec.threshold or spec.max_regression is not None
    if canary.problem is not None or canary.samples < min_samples:
        assert m.verdict is Verdict.INCONCLUSIVE
    # the effective threshold is never looser than the absolute one
    if spec.direction is Direction.AT_MOST:
        assert m.threshold <= spec.threshold
    else:
        assert m.threshold >= spec.threshold


counts = st.dictionaries(st.sampled_from("abcde"), st.integers(0, 1000), min_size=1)


@settings(max_examples=200, deadline=None)
@given(canary=counts, stable=counts)
def test_psi_is_nonnegative_symmetric_and_zero_on_equal_shares(
    canary: dict[str, int], stable: dict[str, int]
) -> None:
    if sum(canary.values()) == 0 or sum(stable.values()) == 0:
        return
    value = psi(canary, stable)
    assert value >= -1e-12
    assert abs(value - psi(stable, canary)) < 1e-9
    assert abs(psi(canary, {k: 3 * v for k, v in canary.items()})) < 1e-12


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.tuples(st.sampled_from("012"), st.sampled_from("012")), st.integers(1, 50), min_size=1)
)
def test_macro_f1_is_a_fraction(confusion: dict[tuple[str, str], int]) -> None:
    assert 0.0 <= macro_f1(confusion) <= 1.0


@settings(max_examples=200, deadline=None)
@given(
    verdicts=st.lists(st.sampled_from(list(Verdict)), min_size=1, max_size=12),
    policy=st.sampled_from(list(InconclusivePolicy)),
    failure_limit=st.integers(1, 4),
    inconclusive_limit=st.integers(0, 4),
)
def test_rollback_exactly_when_the_failure_streak_reaches_the_limit(
    verdicts: list[Verdict], policy: InconclusivePolicy, failure_limit: int, inconclusive_limit: int
) -> None:
    spec = AnalysisSpec(
        metrics=(MetricSpec(MetricKind.ERROR_RATE, 0.01),),
        failure_limit=failure_limit,
        inconclusive_policy=policy,
        inconclusive_limit=inconclusive_limit,
    )
    state = AnalysisState()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for i, verdict in enumerate(verdicts):
        m = Measurement(MetricKind.ERROR_RATE, verdict, 0.0, 0.01, Direction.AT_MOST, 100, str(verdict))
        outcome = judge(spec, [m], state, now + timedelta(seconds=i))
        assert outcome.verdict is verdict
        assert (outcome.action is Action.ROLLBACK) == (outcome.state.consecutive_failures >= failure_limit)
        assert (outcome.action is Action.PROCEED) == (verdict is Verdict.PASSED)
        if verdict is Verdict.INCONCLUSIVE and policy is InconclusivePolicy.HOLD:
            assert outcome.state.consecutive_failures == state.consecutive_failures
        state = outcome.state
        if outcome.action is Action.ROLLBACK:
            break  # the canary is gone; nothing more is judged

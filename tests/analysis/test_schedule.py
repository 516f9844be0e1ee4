"""next_analysis: when a ModelDeployment is due for an analysis run, from its spec and status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mlrollout.operator.analysis import AnalysisSpecError, AnalysisState, Verdict
from mlrollout.operator.analysis.schedule import Due, NotDue, next_analysis

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ANALYSIS = {"interval": "30s", "metrics": [{"name": "errorRate", "max": 0.01}]}
SPEC = {"rollout": {"analysis": ANALYSIS}}
STATUS = {"stable": {"version": "6"}, "canary": {"version": "7", "weight": 10}}


def last(version: str, seconds_ago: float, failures: int = 1) -> dict[str, Any]:
    state = AnalysisState(failures, 0, 3, Verdict.FAILED, NOW - timedelta(seconds=seconds_ago))
    return {"canaryVersion": version, **state.to_status()}


def test_due_without_previous_run() -> None:
    answer = next_analysis("ns", "md", SPEC, STATUS, NOW, default_prometheus="http://prom:9090")
    assert isinstance(answer, Due)
    assert (answer.target.canary_version, answer.target.stable_version) == ("7", "6")
    assert answer.state == AnalysisState()
    assert answer.spec.prometheus_address == "http://prom:9090"


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({}, STATUS, NotDue("spec.rollout.analysis is not set", None)),
        (SPEC, {"stable": {"version": "6"}}, NotDue("no canary to analyze", None)),
        (SPEC, None, NotDue("no canary to analyze", None)),
        (SPEC, {**STATUS, "lastAnalysis": last("7", 10)}, NotDue("next analysis of canary 7 in 20.0s", 20.0)),
    ],
)
def test_not_due(spec: dict[str, Any], status: dict[str, Any] | None, expected: NotDue) -> None:
    assert next_analysis("ns", "md", spec, status, NOW, default_prometheus="http://p:9090") == expected


def test_due_again_after_the_interval_and_continues_the_state() -> None:
    answer = next_analysis(
        "ns", "md", SPEC, {**STATUS, "lastAnalysis": last("7", 30)}, NOW, default_prometheus="http://p:9090"
    )
    assert isinstance(answer, Due)
    assert answer.state.consecutive_failures == 1


def test_a_new_canary_starts_fresh_at_once() -> None:
    answer = next_analysis(
        "ns", "md", SPEC, {**STATUS, "lastAnalysis": last("5", 1)}, NOW, default_prometheus="http://p:9090"
    )
    assert isinstance(answer, Due)
    assert answer.state == AnalysisState()


def test_invalid_analysis_spec_names_the_field() -> None:
    bad = {"rollout": {"analysis": {**ANALYSIS, "failureLimit": 0}}}
    with pytest.raises(AnalysisSpecError, match="failureLimit must be >= 1"):
        next_analysis("ns", "md", bad, STATUS, NOW, default_prometheus="http://p:9090")

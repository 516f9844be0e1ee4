"""next_analysis: when a ModelDeployment is due for an analysis run, from its spec and typed status.
A run continues only the state of the current canary revision since it started."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mlrollout.operator.analysis import AnalysisState, Verdict
from mlrollout.operator.analysis.schedule import Due, NotDue, next_analysis
from mlrollout.operator.model import AnalysisInvalid, AnalysisResult, Status, Track

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ANALYSIS = {"interval": "30s", "metrics": [{"name": "errorRate", "max": 0.01}]}
STATUS = Status(
    stable=Track("6", "u6", "md-v6-aaaaaa", serving_hash="aaaaaa"),
    canary=Track("7", "u7", "md-v7-aaaaaa", serving_hash="aaaaaa"),
    canary_started_at=NOW - timedelta(minutes=5),
)


def last(version: str, seconds_ago: float, failures: int = 1, revision: str = "aaaaaa") -> AnalysisResult:
    state = AnalysisState(failures, 0, 3, Verdict.FAILED, NOW - timedelta(seconds=seconds_ago))
    record = {"canaryVersion": version, "canaryRevision": revision, **state.to_status()}
    result = AnalysisResult.from_dict(record)
    assert result is not None
    return result


def test_due_without_previous_run() -> None:
    answer = next_analysis("ns", "md", ANALYSIS, STATUS, NOW, default_prometheus="http://prom:9090")
    assert isinstance(answer, Due)
    assert (answer.target.canary_version, answer.target.stable_version) == ("7", "6")
    assert answer.canary_revision == "aaaaaa"
    assert answer.state == AnalysisState()
    assert answer.spec.prometheus_address == "http://prom:9090"


@pytest.mark.parametrize(
    ("raw", "status", "expected"),
    [
        (None, STATUS, NotDue("spec.rollout.analysis is not set", None)),
        (ANALYSIS, replace(STATUS, canary=None), NotDue("no canary to analyze", None)),
        (
            ANALYSIS,
            replace(STATUS, last_analysis=last("7", 10)),
            NotDue("next analysis of canary 7 in 20.0s", 20.0),
        ),
    ],
)
def test_not_due(raw: dict[str, Any] | None, status: Status, expected: NotDue) -> None:
    assert next_analysis("ns", "md", raw, status, NOW, default_prometheus="http://p:9090") == expected


def test_due_again_after_the_interval_and_continues_the_state() -> None:
    status = replace(STATUS, last_analysis=last("7", 30))
    answer = next_analysis("ns", "md", ANALYSIS, status, NOW, default_prometheus="http://p:9090")
    assert isinstance(answer, Due)
    assert answer.state.consecutive_failures == 1


@pytest.mark.parametrize(
    ("why", "record"),
    [
        ("another version", last("5", 1)),
        (
            "same version, another pod template (a retry after a serving change)",
            last("7", 1, revision="bbbbbb"),
        ),
        (
            "same revision, but taken before this canary started (a retry of a rolled-back version)",
            last("7", 600),
        ),
    ],
)
def test_a_result_about_another_canary_starts_clean(why: str, record: AnalysisResult) -> None:
    status = replace(STATUS, last_analysis=record)
    answer = next_analysis("ns", "md", ANALYSIS, status, NOW, default_prometheus="http://p:9090")
    assert isinstance(answer, Due), why
    assert answer.state == AnalysisState(), why


def test_invalid_analysis_spec_is_an_observation_naming_the_field() -> None:
    bad = {**ANALYSIS, "failureLimit": 0}
    answer = next_analysis("ns", "md", bad, STATUS, NOW, default_prometheus="http://p:9090")
    assert isinstance(answer, AnalysisInvalid)
    assert "failureLimit must be >= 1" in answer.message


def test_no_prometheus_address_is_invalid_not_a_loop() -> None:
    answer = next_analysis("ns", "md", ANALYSIS, STATUS, NOW, default_prometheus=None)
    assert isinstance(answer, AnalysisInvalid)
    assert "prometheus.address is required" in answer.message

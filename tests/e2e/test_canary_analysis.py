"""Canary analysis end to end: operator process + control plane + MLflow + gunicorn serving processes
+ Prometheus scraping them + weighted load with ground-truth feedback.

Every scenario starts from a good stable version under load, then introduces a canary:
(a) a good one is promoted; (b) one answering 500s is rolled back; (c) one whose live F1 is far below
stable is rolled back; (d) with no traffic the analysis is Inconclusive and the rollout holds;
(e) with Prometheus down the analysis is Inconclusive and the rollout holds.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from faulty_model import serving_env
from harness import TargetBoard
from scenario import MODEL, E2eModels, Scenario, canary_is, manifest, stable_is, start_prometheus

pytestmark = pytest.mark.e2e

Rows = tuple[list[dict[str, float]], list[int]]


def start_stable(
    sc: Scenario, models: E2eModels, prometheus_url: str, rows: Rows | None, *, failure_limit: int = 1
) -> None:
    """The good version becomes stable, its server runs, and (with rows) load flows."""
    body = manifest(
        sc.name, MODEL, models.good.version, prometheus_url, env=serving_env(), failure_limit=failure_limit
    )
    sc.apply(body)
    sc.wait("first version stable", stable_is(models.good.version))
    sc.runner.wait_ready(["stable"])
    if rows is not None:
        sc.start_load(*rows)


def analysis_of(status: dict[str, Any], version: str) -> dict[str, Any]:
    record = status.get("lastAnalysis") or {}
    return record if record.get("canaryVersion") == version else {}


def test_e2e_good_canary_is_promoted(
    make_scenario: Any, e2e_models: E2eModels, prometheus: Any, rows: Rows
) -> None:
    sc = make_scenario("good")
    start_stable(sc, e2e_models, prometheus.url, rows)
    canary = e2e_models.better.version
    sc.set_version(canary)
    sc.wait("canary promoted", stable_is(canary), timeout=120)

    status = sc.status()
    assert status["phase"] == "Promoted"
    record = analysis_of(status, canary)
    assert record["verdict"] == "Passed", record
    for metric in ("errorRate", "liveF1", "latencyP99Ms"):
        assert record["metrics"][metric]["verdict"] == "Passed", record["metrics"][metric]
        assert record["metrics"][metric]["samples"] >= 15
    assert record["metrics"]["errorRate"]["value"] == 0
    assert record["metrics"]["liveF1"]["value"] >= 0.8
    assert sc.load is not None
    assert sc.load.stats.total("canary") > 0
    assert sc.load.stats.feedback["canary"] > 0
    assert any(e.startswith("AnalysisPassed") for e in sc.events())


# benchmarks/rollback/run.sh repeats this scenario to measure the rollback reaction time.
@pytest.mark.parametrize("attempt", range(int(os.environ.get("MLROLLOUT_ROLLBACK_RUNS", "1"))))
def test_e2e_erroring_canary_is_rolled_back(
    make_scenario: Any, e2e_models: E2eModels, prometheus: Any, rows: Rows, attempt: int
) -> None:
    sc = make_scenario("errors")
    start_stable(sc, e2e_models, prometheus.url, rows, failure_limit=2)
    broken = e2e_models.broken
    sc.set_version(broken)
    sc.wait("broken canary running", canary_is(broken))
    status = sc.wait(
        "rollback", lambda s: s if s.get("phase") == "RolledBack" else None, timeout=120, every=0.1
    )
    observed_at = time.time()

    record = analysis_of(status, broken)
    assert record["action"] == "Rollback", record
    assert record["consecutiveFailures"] == 2  # failureLimit: the first failure only held
    errors = record["metrics"]["errorRate"]
    assert errors["verdict"] == "Failed", errors
    assert errors["value"] > 0.5, errors
    assert (status["stable"] or {})["version"] == e2e_models.good.version
    assert not status.get("canary")
    assert status.get("weight", 0) == 0
    assert sc.load is not None
    assert sc.load.stats.errors("canary") > 0
    events = sc.events()
    assert any(e.startswith("AnalysisFailed") for e in events), events
    assert any(e.startswith("RolledBack") for e in events), events
    _record_reaction(record, status, observed_at)


def test_e2e_canary_with_poor_live_f1_is_rolled_back(
    make_scenario: Any, e2e_models: E2eModels, prometheus: Any, rows: Rows
) -> None:
    sc = make_scenario("quality")
    start_stable(sc, e2e_models, prometheus.url, rows)
    poor = e2e_models.poor.version
    sc.set_version(poor)
    status = sc.wait("rollback", lambda s: s if s.get("phase") == "RolledBack" else None, timeout=120)

    record = analysis_of(status, poor)
    assert record["action"] == "Rollback", record
    f1 = record["metrics"]["liveF1"]
    assert f1["verdict"] == "Failed", f1
    assert f1["value"] < 0.8, f1
    # It answers; it is just wrong. (errorRate may still be short of minSamples when liveF1 fails:
    # feedback through the Service reaches the canary's version from every pod, so F1 can have its
    # samples first. Either way errors are not what rolled it back.)
    assert record["metrics"]["errorRate"]["verdict"] != "Failed", record["metrics"]["errorRate"]
    assert (status["stable"] or {})["version"] == e2e_models.good.version
    # Every label went through "the Service" (any ready server of either track, with the prediction
    # token), and many were counted by another server than the one that predicted.
    assert sc.load is not None
    assert sc.load.stats.feedback["canary"] > 0
    assert sc.load.stats.feedback_elsewhere > 0


def test_e2e_no_traffic_is_inconclusive_and_holds(
    make_scenario: Any, e2e_models: E2eModels, prometheus: Any
) -> None:
    sc = make_scenario("idle")
    start_stable(sc, e2e_models, prometheus.url, rows=None)
    canary = e2e_models.better.version
    sc.set_version(canary)
    status = sc.wait(
        "three inconclusive analyses",
        lambda s: s if analysis_of(s, canary).get("consecutiveInconclusive", 0) >= 3 else None,
        timeout=90,
    )
    record = analysis_of(status, canary)
    assert record["verdict"] == "Inconclusive", record
    assert record["action"] == "Hold"
    assert all(m["verdict"] == "Inconclusive" for m in record["metrics"].values() if m), record
    assert status["phase"] == "Paused", status["message"]
    assert (status["canary"] or {})["version"] == canary  # held, neither promoted nor rolled back
    assert (status["stable"] or {})["version"] == e2e_models.good.version
    assert any(e.startswith("AnalysisInconclusive") for e in sc.events())


def test_e2e_prometheus_down_holds(
    make_scenario: Any, e2e_models: E2eModels, component_logs: Any, rows: Rows
) -> None:
    own = start_prometheus(component_logs, "prometheus-to-stop")
    try:
        sc = make_scenario("blind", TargetBoard(own))
        start_stable(sc, e2e_models, own.url, rows)
        own.stop()  # Prometheus goes away before the canary arrives
        canary = e2e_models.better.version
        sc.set_version(canary)
        status = sc.wait(
            "three inconclusive analyses",
            lambda s: s if analysis_of(s, canary).get("consecutiveInconclusive", 0) >= 3 else None,
            timeout=90,
        )
    finally:
        own.stop()
    record = analysis_of(status, canary)
    assert record["verdict"] == "Inconclusive", record
    assert record["action"] == "Hold", record
    assert "unreachable" in record["message"], record["message"]
    assert status["phase"] == "Paused"
    assert (status["canary"] or {})["version"] == canary
    assert (status["stable"] or {})["version"] == e2e_models.good.version


def _record_reaction(record: dict[str, Any], status: dict[str, Any], observed_at: float) -> None:
    """Failure limit reached (evaluatedAt of the analysis run that said Rollback, operator clock) ->
    status seen with the canary gone and weight 0 (test clock, same machine), appended to
    MLROLLOUT_ROLLBACK_RESULTS when set (benchmarks/rollback); the test itself asserts no timing."""
    out = os.environ.get("MLROLLOUT_ROLLBACK_RESULTS")
    if not out:
        return
    judged = _parse(record["evaluatedAt"])
    entry = {
        "failure_limit_reached_at": record["evaluatedAt"],
        # Upper bound: includes up to one 0.1s poll and a kubectl round trip.
        "reaction_seconds_observed": round(observed_at - judged, 3),
        "weight_after": status.get("weight", 0),
        "analysis_interval_seconds": 3,
        "failure_limit": 2,
        "consecutive_failures": record.get("consecutiveFailures"),
    }
    path = Path(out)
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(entry)
    path.write_text(json.dumps(runs, indent=2) + "\n")


def _parse(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

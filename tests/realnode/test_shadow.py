"""Shadow steps on real pods: the installed operator runs the canary version as shadow pods no
user-facing Service selects, the stable pods (told through their annotation, read by kubelet into a
downward-API file) copy every scoring request to them off the request path and compare, real
Prometheus scrapes the comparisons, and the operator judges `agreement` from it. Meanwhile an
in-cluster load generator calls the one Service and must see only stable answers and no failure.

identical canary -> agreement ~1, the step passes, promoted; a canary trained on shuffled labels ->
agreement fails, rolled back before any user saw it, `kubectl mlrollout diff` lists its
disagreements; shadow pods killed mid-step -> zero user-facing errors (rolled back on their
failed copies, or promoted once replacements answer).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
import test_analysis
from local_cluster import LocalCluster
from mlrollout.operator.plugin.diff import main as diff_main
from realpods import wait_until
from support.mlflow_models import ModelVersionInfo, train_and_register
from test_analysis import Scenario, analysis_of, rolled_back

# The analysis tier's fixtures: a ModelDeployment through the installed operator with its load, and
# 200 labelled breast-cancer rows.
scenario = test_analysis.scenario
labelled_rows = test_analysis.labelled_rows

pytestmark = pytest.mark.realnode
MODEL = "node-shadow"
SHADOW_METRICS = (
    {"name": "agreement", "min": 0.95},
    {"name": "errorRate", "max": 0.05},
    {"name": "latencyP99Ms", "max": 2000},
)


def steps(seconds: int) -> tuple[dict[str, Any], ...]:
    return ({"shadow": {"duration": f"{seconds}s", "percent": 100}}, {"setWeight": 100})


@dataclass(frozen=True)
class Versions:
    good: ModelVersionInfo
    same: ModelVersionInfo  # trained exactly like good: the same answer for every row
    shuffled: ModelVersionInfo  # trained on shuffled labels


@pytest.fixture(scope="module")
def versions(node_mlflow: Any) -> Versions:
    uri = node_mlflow.tracking_uri
    return Versions(
        good=train_and_register(uri, MODEL, seed=0),
        same=train_and_register(uri, MODEL, seed=0),
        shuffled=train_and_register(uri, MODEL, quality="poor", seed=3),
    )


def shadow_record(sc: Scenario, version: ModelVersionInfo, timeout: float = 240) -> dict[str, Any]:
    """The first analysis of `version` that judged agreement (during the shadow step, once copies
    were compared: the runs before that are Inconclusive for want of comparisons)."""

    def measured(s: dict[str, Any]) -> bool:
        agreement = (analysis_of(s, version).get("metrics") or {}).get("agreement") or {}
        return agreement.get("verdict") in ("Passed", "Failed")

    return analysis_of(sc.wait("an agreement measurement", measured, timeout), version)


def copies_by_outcome(prometheus: Any, sc: Scenario) -> dict[str, float]:
    """Every copy the stable pods sent this rollout's shadow, by outcome, as real Prometheus scraped
    the pods' counters (the pods may be gone: the last value of each series in the last 10 min)."""
    selector = f'namespace="{sc.namespace}", model_deployment="{sc.md.name}"'
    query = f"sum by (outcome) (max_over_time(mlrollout_shadow_requests_total{{{selector}}}[10m]))"
    data = prometheus.api("/api/v1/query", {"query": query})
    return {r["metric"]["outcome"]: float(r["value"][1]) for r in data["result"]}


def test_an_identical_canary_passes_shadow_with_agreement_near_one(
    scenario: Any, versions: Versions, labelled_rows: list[dict[str, Any]], kube_prometheus: Any
) -> None:
    sc = scenario("same")
    sc.start_stable(versions.good, model=MODEL, steps=steps(25), metrics=SHADOW_METRICS)
    sc.start_load(labelled_rows)
    sc.set_version(versions.same)
    record = shadow_record(sc, versions.same)
    during = sc.status()
    status = sc.wait(
        "the canary promoted",
        lambda s: (s.get("stable") or {}).get("version") == versions.same.version and not s.get("canary"),
    )
    result = sc.stop_load()
    outcomes = copies_by_outcome(kube_prometheus, sc)
    print(
        f"\n[shadow] identical canary: {json.dumps(record['metrics'])}; load {result.summary}; "
        f"copies by outcome {outcomes}"
    )

    agreement = record["metrics"]["agreement"]
    assert agreement["verdict"] == "Passed", record
    assert agreement["value"] >= 0.99, agreement
    assert agreement["samples"] >= 15, agreement
    # The canary's error rate on the copies, judged in the same run.
    assert record["metrics"]["errorRate"]["verdict"] == "Passed", record
    assert during.get("weight", 0) == 0
    assert status["phase"] == "Promoted", status["message"]
    assert result.failed == 0, result.summary["failures"]
    assert outcomes.get("answered", 0) >= 1, outcomes


def test_a_shuffled_labels_canary_fails_shadow_and_no_user_ever_saw_it(
    scenario: Any, versions: Versions, labelled_rows: list[dict[str, Any]], node: LocalCluster
) -> None:
    sc = scenario("shuffled")
    sc.start_stable(versions.good, model=MODEL, steps=steps(120), metrics=SHADOW_METRICS)
    sc.start_load(labelled_rows)
    sc.set_version(versions.shuffled)
    status = sc.wait("the shuffled canary rolled back", rolled_back)
    time.sleep(3)  # a few more answers after the rollback
    result = sc.stop_load()
    print(f"\n[shadow] shuffled canary: {status.get('message')}; load {result.summary}")

    record = analysis_of(status, versions.shuffled)
    agreement = record["metrics"]["agreement"]
    assert agreement["verdict"] == "Failed", record
    assert agreement["value"] < 0.9, agreement
    assert status["stable"]["version"] == versions.good.version
    assert not status.get("canary")
    # Users: only the stable version answered, and nothing failed.
    assert result.failed == 0, result.summary["failures"]
    assert set(result.by_version) == {versions.good.version}, result.by_version
    assert any(e.startswith("RolledBack") for e in sc.events())

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = diff_main([sc.md.name, "-n", sc.namespace, "--kubeconfig", str(node.kubeconfig), "-o", "json"])
    assert code == 0
    rows = json.loads(out.getvalue())["disagreements"]
    assert rows, "no disagreements read from the stable pods"
    assert {r["shadowVersion"] for r in rows} == {versions.shuffled.version}
    assert {r["stableVersion"] for r in rows} == {versions.good.version}
    assert all(r["stablePrediction"] != r["shadowPrediction"] for r in rows)
    assert all("input" not in r for r in rows)  # recordInputs is off: no personal data kept
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        assert diff_main([sc.md.name, "-n", sc.namespace, "--kubeconfig", str(node.kubeconfig)]) == 0
    print(table.getvalue())
    assert table.getvalue().splitlines()[0].split() == ["TIME", "REQUEST", "ID", "ROW", "STABLE", "SHADOW"]


def test_shadow_pods_that_crash_mid_step_cost_users_nothing(
    scenario: Any, versions: Versions, labelled_rows: list[dict[str, Any]]
) -> None:
    sc = scenario("crash")
    sc.start_stable(versions.good, model=MODEL, steps=steps(60), metrics=SHADOW_METRICS)
    sc.start_load(labelled_rows)
    sc.set_version(versions.same)
    shadow_record(sc, versions.same)  # copies are being answered
    selector = f"app.kubernetes.io/name=mlrollout-shadow,mlrollout.io/model-deployment={sc.md.name}"
    sc.md.kubectl("delete", "pods", "-l", selector, "--grace-period=0", "--force", "--wait=false")
    during = sc.status()
    # Either outcome is right: the copies the dead pods failed count as the canary's errors (enough
    # of them in one window roll it back), or its replacement pods answer again and it passes.
    status = sc.wait("the rollout decided", lambda s: s.get("phase") in ("Promoted", "RolledBack"), 240)
    result = sc.stop_load()
    print(
        f"\n[shadow] shadow pods killed: {status.get('phase')}: {status.get('message')}; "
        f"load {result.summary}"
    )

    assert during.get("weight", 0) == 0
    assert result.failed == 0, result.summary["failures"]
    if status["phase"] == "RolledBack":
        assert set(result.by_version) == {versions.good.version}, result.by_version
        errors = analysis_of(status, versions.same)["metrics"]["errorRate"]
        assert errors["verdict"] == "Failed", errors
    else:
        assert status["stable"]["version"] == versions.same.version
    wait_until(
        "the shadow pods gone", lambda: not sc.md.kubectl("get", "pods", "-l", selector, "-o", "name"), 60
    )

"""The operator, as a real process, rolling MLflow versions out on the local control plane."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster.helpers import MODEL, Kubectl, Models, Operator, TcpProxy, model_deployment, wait_for

pytestmark = pytest.mark.cluster


def phase_is(kc: Kubectl, name: str, phase: str) -> Any:
    def probe() -> Any:
        st = kc.status(name)
        return st if st.get("phase") == phase else None

    return probe


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def deploy_stable(kc: Kubectl, name: str, models: Models, **kw: Any) -> dict[str, Any]:
    kc.apply(model_deployment(name, models.v1.version, **kw))
    return wait_for(f"{name} version {models.v1.version} Promoted", phase_is(kc, name, "Promoted"))


def at_step(kc: Kubectl, name: str, index: int, phase: str = "Paused") -> Any:
    def probe() -> Any:
        st = kc.status(name)
        return st if st.get("currentStepIndex") == index and st.get("phase") == phase else None

    return probe


def test_gate_rejects_a_poor_version_and_creates_nothing(
    running_operator: Operator, kc: Kubectl, models: Models, mlflow_server: Any
) -> None:
    kc.apply(model_deployment("poor", models.poor.version, threshold=0.8))
    st = wait_for("Rejected", phase_is(kc, "poor", "Rejected"))
    gate = condition(st, "GatePassed")
    assert gate["status"] == "False"
    assert f"f1_score {models.poor.f1:.4f} < threshold 0.8000" in gate["message"]
    assert kc.deployments("poor") == {}
    assert any(e.startswith("GateFailed:") for e in wait_for("GateFailed event", lambda: kc.events("poor")))
    from mlflow.tracking import MlflowClient

    tags = wait_for(
        "rejected tag",
        lambda: (
            MlflowClient(mlflow_server.tracking_uri)
            .get_model_version(MODEL, models.poor.version)
            .tags.get("mlrollout.status")
        ),
    )
    assert tags == "rejected"


def test_first_version_becomes_stable(running_operator: Operator, kc: Kubectl, models: Models) -> None:
    st = deploy_stable(kc, "first", models, replicas=3)
    assert st["stable"]["version"] == models.v1.version
    assert st["stable"]["modelUri"] == models.v1.source
    assert st["stable"]["gateValue"] == pytest.approx(models.v1.f1)
    assert condition(st, "Ready")["status"] == "True"
    assert st["observedGeneration"] == 1
    deps = kc.deployments("first")
    assert list(deps) == [f"v{models.v1.version}"]
    dep = deps[f"v{models.v1.version}"]
    assert dep["track"] == "stable"
    env = {e["name"]: e["value"] for e in dep["template"]["spec"]["containers"][0]["env"]}
    assert env["MLROLLOUT_MODEL_URI"] == models.v1.source  # pinned artifact, never an alias
    assert dep["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    kc.run("rollout", "status", f"deployment/{dep['name']}", "--timeout=60s")
    svc = json.loads(kc.run("get", "service", "first", "-o", "json").stdout)
    assert svc["spec"]["selector"]["mlrollout.io/model-deployment"] == "first"
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    cols = kc.columns("first")
    assert cols[1:6] == [MODEL, models.v1.version, "", "0", "Promoted"]
    events = wait_for(
        "Available event",
        lambda: (e := kc.events("first")) and any(x.startswith("Available") for x in e) and e,
    )
    assert sum(e.startswith("StableDeployed:") for e in events) == 1  # each decision announced once


def test_canary_walks_10_50_100_then_promotes_and_undo_restores(
    running_operator: Operator, kc: Kubectl, models: Models
) -> None:
    v1, v2 = models.v1.version, models.v2.version
    deploy_stable(kc, "walk", models)
    kc.apply(model_deployment("walk", v2))

    expected = [
        (1, 10, {f"v{v1}": 9, f"v{v2}": 1}),
        (3, 50, {f"v{v1}": 5, f"v{v2}": 5}),
        (5, 100, {f"v{v1}": 0, f"v{v2}": 10}),
    ]
    for index, weight, replicas in expected:
        st = wait_for(f"pause at step {index + 1} (weight {weight})", at_step(kc, "walk", index))
        assert st["weight"] == weight
        assert kc.replicas("walk") == replicas
        assert kc.columns("walk")[1:6] == [MODEL, v1, v2, str(weight), "Paused"]
        ready = kc.deployments("walk")[f"v{v2}"]
        assert ready["ready"] == replicas[f"v{v2}"]
        assert "promote (step) requested" in kc.plugin("promote", "walk")

    st = wait_for("Promoted", phase_is(kc, "walk", "Promoted"))
    assert st["stable"]["version"] == v2
    assert "canary" not in st or st["canary"] is None
    assert kc.columns("walk")[1:6] == [MODEL, v2, "", "0", "Promoted"]
    deps = kc.deployments("walk")
    assert deps[f"v{v1}"]["replicas"] == 0  # kept for instant undo
    assert deps[f"v{v2}"]["track"] == "stable"
    assert [h["version"] for h in st["history"]] == [v1]
    assert v1 in kc.plugin("history", "walk")
    events = kc.events("walk")
    assert any(e.startswith("Promoted:") for e in events)
    assert any(e.startswith("StepCompleted:") for e in events)

    assert f"undo to version {v1} requested" in kc.plugin("undo", "walk")
    st = wait_for("undo to v1", lambda: (s := kc.status("walk")).get("stable", {}).get("version") == v1 and s)
    wait_for("v1 serving again", lambda: kc.replicas("walk") == {f"v{v1}": 10, f"v{v2}": 0})
    assert deps[f"v{v1}"]["uid"] == kc.deployments("walk")[f"v{v1}"]["uid"]  # the kept Deployment, reused
    assert kc.md("walk")["spec"]["model"]["version"] == v1
    assert "Phase:" in kc.plugin("status", "walk")


def test_canary_that_never_becomes_ready_is_rolled_back(
    running_operator: Operator, kc: Kubectl, models: Models
) -> None:
    deadline = 10
    deploy_stable(kc, "stuck", models, replicas=4, deadline=deadline)
    before = kc.deployments("stuck")
    # No node carries this label, so the canary's pods stay Pending (kwok makes any scheduled pod Ready).
    kc.apply(
        model_deployment(
            "stuck",
            models.v2.version,
            replicas=4,
            deadline=deadline,
            serving={"nodeSelector": {"mlrollout.io/no-such-node": "true"}},
        )
    )
    st = wait_for("RolledBack", phase_is(kc, "stuck", "RolledBack"), timeout=deadline + 60)
    assert st["abandoned"]["reason"] == "ProgressDeadlineExceeded"
    assert "unschedulable" in st["message"]
    progressing = condition(st, "Progressing")
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    wait_for("canary deleted", lambda: set(kc.deployments("stuck")) == set(before))
    after = kc.deployments("stuck")
    key = f"v{models.v1.version}"
    assert after[key]["uid"] == before[key]["uid"]
    assert after[key]["template"] == before[key]["template"]  # stable untouched
    assert after[key]["replicas"] == 4
    # Rolled back within progressDeadlineSeconds + 10 s of the canary starting (API server clocks).
    from datetime import datetime

    started = datetime.fromisoformat(
        next(e for e in _events_json(kc, "stuck") if e["reason"] == "CanaryStarted")[
            "firstTimestamp"
        ].replace("Z", "+00:00")
    )
    rolled = datetime.fromisoformat(progressing["lastTransitionTime"].replace("Z", "+00:00"))
    assert (rolled - started).total_seconds() <= deadline + 10


def _events_json(kc: Kubectl, name: str) -> list[dict[str, Any]]:
    out = json.loads(
        kc.run("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    )
    items: list[dict[str, Any]] = out["items"]
    for e in items:
        e["firstTimestamp"] = e.get("firstTimestamp") or e.get("eventTime")
    return items


def test_abort_through_the_plugin_rolls_back(running_operator: Operator, kc: Kubectl, models: Models) -> None:
    deploy_stable(kc, "abort", models)
    kc.apply(model_deployment("abort", models.v2.version))
    wait_for("canary at 10%", at_step(kc, "abort", 1))
    assert "abort requested" in kc.plugin("abort", "abort")
    st = wait_for("RolledBack", phase_is(kc, "abort", "RolledBack"))
    assert st["abandoned"] == {
        "version": models.v2.version,
        "reason": "Aborted",
        "message": f"rollout of version {models.v2.version} aborted by the user",
        "servingHash": st["abandoned"]["servingHash"],
    }
    wait_for("stable back to 10", lambda: kc.replicas("abort") == {f"v{models.v1.version}": 10})
    assert kc.columns("abort")[3:6] == ["", "0", "RolledBack"]


def test_pause_and_resume_through_the_plugin(running_operator: Operator, kc: Kubectl, models: Models) -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]
    deploy_stable(kc, "pausing", models)
    kc.plugin("pause", "pausing")
    kc.apply(model_deployment("pausing", models.v2.version, steps=steps, paused=True))
    st = wait_for("paused by the user", lambda: (s := kc.status("pausing")).get("phase") == "Paused" and s)
    assert st["message"].startswith("paused by the user")
    index = st["currentStepIndex"]
    assert index in (0, 1)
    kc.plugin("resume", "pausing")
    wait_for("waiting at the indefinite pause", at_step(kc, "pausing", 3))
    assert kc.replicas("pausing") == {f"v{models.v1.version}": 5, f"v{models.v2.version}": 5}


def test_operator_killed_mid_rollout_resumes_without_recreating(
    running_operator: Operator, kc: Kubectl, models: Models
) -> None:
    deploy_stable(kc, "restart", models)
    kc.apply(model_deployment("restart", models.v2.version))
    wait_for("canary at 10%", at_step(kc, "restart", 1))
    kc.plugin("promote", "restart")
    wait_for("canary at 50%", at_step(kc, "restart", 3))
    uids = {k: v["uid"] for k, v in kc.deployments("restart").items()}
    svc_uid = json.loads(kc.run("get", "service", "restart", "-o", "json").stdout)["metadata"]["uid"]

    running_operator.kill()
    running_operator.start()

    kc.plugin("promote", "restart")  # proves the new process picked the rollout up where it was
    st = wait_for("canary at 100%", at_step(kc, "restart", 5))
    assert st["weight"] == 100
    assert {k: v["uid"] for k, v in kc.deployments("restart").items()} == uids
    assert json.loads(kc.run("get", "service", "restart", "-o", "json").stdout)["metadata"]["uid"] == svc_uid
    assert kc.replicas("restart") == {f"v{models.v1.version}": 0, f"v{models.v2.version}": 10}


def test_mlflow_unreachable_freezes_serving_then_recovers(
    running_operator: Operator, kc: Kubectl, models: Models, mlflow_proxy: TcpProxy
) -> None:
    uri = f"http://127.0.0.1:{mlflow_proxy.port}"
    deploy_stable(kc, "outage", models, tracking_uri=uri)
    before = kc.deployments("outage")

    mlflow_proxy.stop()
    kc.apply(model_deployment("outage", models.v2.version, tracking_uri=uri))

    def unreachable() -> Any:
        st = kc.status("outage")
        cond = next((c for c in st.get("conditions", []) if c["type"] == "RegistryReachable"), None)
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for("RegistryReachable=False", unreachable)
    assert cond["reason"] == "RegistryUnreachable"
    assert uri in cond["message"]
    assert kc.deployments("outage") == before  # serving untouched
    assert kc.status("outage")["phase"] == "Promoted"

    mlflow_proxy.start()
    st = wait_for(
        "canary of v2 after MLflow returned",
        lambda: (s := kc.status("outage")).get("canary", {}) and s,
        timeout=60,
    )
    assert st["canary"]["version"] == models.v2.version
    assert condition(st, "RegistryReachable")["status"] == "True"


def test_deleting_the_model_deployment_deletes_its_children(
    running_operator: Operator, kc: Kubectl, models: Models
) -> None:
    deploy_stable(kc, "gone", models, replicas=2)
    kc.run("delete", "md", "gone", "--timeout=60s")
    wait_for("children garbage-collected", lambda: kc.deployments("gone") == {} or None)
    assert kc.run("get", "service", "gone", check=False).returncode != 0


def test_operator_serves_its_own_metrics(running_operator: Operator) -> None:
    """MLROLLOUT_METRICS_PORT exposes the operator's Prometheus metrics (analysis series appear once
    a canary is analysed; tests/analysis/test_runner.py checks those are recorded)."""
    import urllib.request

    url = f"http://127.0.0.1:{running_operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    assert resp.status == 200
    assert "process_resident_memory_bytes" in body
    assert "# TYPE mlrollout_analysis_consecutive_failures gauge" in body
    assert "mlrollout_analysis_runs" in body

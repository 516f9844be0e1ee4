"""The shadow step: its spec, the planner's walk through it (the in-memory cluster of test_planner),
and the child objects that keep shadow pods away from users and tell stable pods what to mirror."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mlrollout.operator import children
from mlrollout.operator.model import DeploymentObs, PodObs
from mlrollout.operator.planner.shadow import shadow_name, shadow_replicas
from mlrollout.operator.spec import InvalidSpec, SetWeight, Shadow, parse_spec
from mlrollout.serving.shadow_settings import ShadowSettings

sys.path.insert(0, str(Path(__file__).parent))

from test_planner import ANALYSIS, Sim, make_spec  # the planner's in-memory cluster

MD = {"metadata": {"name": "churn", "namespace": "ml", "uid": "u1"}}
SHADOW_STEPS = [{"shadow": {"duration": "60s", "percent": 50}}, {"setWeight": 10}, {"setWeight": 100}]


def shadow_spec(version: str = "1", **over: Any) -> Any:
    rollout = {"steps": SHADOW_STEPS, "progressDeadlineSeconds": 60, **over.pop("rollout", {})}
    return make_spec(version, rollout=rollout, **over)


def promoted_then(version: str, **over: Any) -> Sim:
    sim = Sim(shadow_spec("1", **over))
    sim.run(2)
    assert sim.status.phase == "Promoted"
    sim.spec = shadow_spec(version, **over)
    return sim


# ---------------------------------------------------------------------------------------- spec
def test_shadow_step_parses_with_defaults() -> None:
    spec = shadow_spec()
    assert spec.steps[0] == Shadow(
        seconds=60, percent=50, tolerance=1e-6, timeout_ms=1000, record_inputs=False
    )
    full = parse_spec(
        {
            "model": {"name": "m", "version": "1"},
            "serving": {"image": "i"},
            "rollout": {
                "steps": [
                    {"shadow": {"duration": "5m", "tolerance": 0.01, "timeoutMs": 250, "recordInputs": True}},
                    {"setWeight": 100},
                ]
            },
        }
    )
    assert full.steps == (Shadow(300, 100, 0.01, 250, True), SetWeight(100))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [{"setWeight": 10}, {"shadow": {"duration": "1m"}}, {"setWeight": 100}],
            r"steps\[1\].shadow comes after",
        ),
        ([{"shadow": {}}, {"setWeight": 100}], r"steps\[0\].shadow.duration"),
        ([{"shadow": {"duration": "1m", "percent": 0}}, {"setWeight": 100}], r"shadow.percent"),
        ([{"shadow": {"duration": "1m", "tolerance": 2}}, {"setWeight": 100}], r"shadow.tolerance"),
        ([{"shadow": {"duration": "1m", "recordInputs": "no"}}, {"setWeight": 100}], r"recordInputs"),
        ([{"shadow": {"duration": "1m"}, "setWeight": 5}, {"setWeight": 100}], r"exactly one of"),
    ],
)
def test_bad_shadow_steps_are_refused_naming_the_field(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        make_spec(rollout={"steps": steps})


# ------------------------------------------------------------------------------------- planner
def test_shadow_runs_separate_pods_then_moves_on_and_removes_them() -> None:
    sim = promoted_then("2")
    p = sim.tick()
    shadow = [d for d in p.deployments if d.shadow]
    assert [(d.version, d.replicas, d.track) for d in shadow] == [("2", 5, "canary")]  # ceil(10 * 50%)
    canary = sim.status.canary
    assert canary is not None
    assert shadow[0].name == shadow_name(canary.deployment)
    assert sim.status.weight == 0  # the canary track itself serves no one
    assert sim.replicas()["churn-v1"] == 10
    sim.tick()
    assert "which serves no user" in sim.status.message
    sim.run(30, 2.0)  # past the 60 s duration
    assert sim.status.current_step_index >= 1
    assert sim.status.weight == 10
    assert shadow_name(canary.deployment) not in sim.deployments  # deleted when the step ended
    assert "StepCompleted" in sim.events()


def test_shadow_waits_for_a_passed_analysis_taken_during_the_step() -> None:
    sim = promoted_then("2", rollout={"analysis": ANALYSIS})
    sim.run(35, 2.0)
    assert sim.status.current_step_index == 0  # duration over, no verdict yet
    assert "waiting for canary analysis" in sim.status.message
    sim.result("Passed", message="agreement 0.998 >= 0.95")
    sim.run(3)
    assert sim.status.current_step_index >= 1


def test_a_failed_shadow_rolls_back_before_any_user_saw_the_canary() -> None:
    sim = promoted_then("2", rollout={"analysis": ANALYSIS})
    sim.run(3)
    sim.result("Failed", action="Rollback", message="agreement 0.51 < 0.95")
    sim.run(3)
    assert sim.status.phase == "RolledBack"
    assert "agreement 0.51 < 0.95" in sim.status.message
    assert max(p.status.weight for p in sim.plans) == 0  # never a user-facing canary pod
    assert not any(name.endswith("-shadow") for name in sim.deployments)
    assert sim.replicas() == {"churn-v1": 10}


def test_crashing_shadow_pods_roll_back() -> None:
    sim = promoted_then("2")
    sim.crash.add("2")
    sim.run(3)
    assert sim.status.phase == "RolledBack"
    assert "shadow pods of canary version 2 are crash-looping" in sim.status.message
    assert sim.replicas() == {"churn-v1": 10}


def test_shadow_pods_that_never_get_ready_hit_the_progress_deadline() -> None:
    sim = promoted_then("2")
    sim.broken.add("2")
    sim.run(40, 2.0)
    assert sim.status.phase == "RolledBack"
    assert "0/5 ready after 60s" in sim.status.message


@pytest.mark.parametrize(("total", "percent", "pods"), [(10, 50, 5), (10, 1, 1), (3, 100, 3), (1, 10, 1)])
def test_shadow_replicas(total: int, percent: int, pods: int) -> None:
    assert shadow_replicas(total, percent) == pods


# ------------------------------------------------------------------------------------ children
def test_shadow_pods_are_outside_every_user_facing_service() -> None:
    sim = promoted_then("2", rollout={"trafficRouter": {"gatewayAPI": {"httpRoute": "r"}}})
    p = sim.tick()
    (want,) = [d for d in p.deployments if d.shadow]
    pod_labels = children.deployment(MD, sim.spec, want)["spec"]["template"]["metadata"]["labels"]
    svcs = children.services(MD, sim.spec)
    assert [s["metadata"]["name"] for s in svcs] == ["churn", "churn-stable", "churn-canary", "churn-shadow"]
    for svc in svcs:
        selects = all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        assert selects == (svc["metadata"]["name"] == "churn-shadow"), svc["metadata"]["name"]
    assert pod_labels[children.LABEL_TRACK] == "canary"  # its own metrics: the canary version's


def pods_of(sim: Sim, shadow: str = "") -> list[PodObs]:
    """One pod per Ready replica of every Deployment, with a shadow annotation `shadow`."""
    return [
        PodObs(f"{d.name}-{i}", d.version, d.name.rsplit("-", 1)[-1], d.track, shadow)
        for d in sim.deployments.values()
        for i in range(d.ready_replicas)
    ]


def test_no_shadow_objects_without_a_shadow_step() -> None:
    spec = make_spec()
    assert [s["metadata"]["name"] for s in children.services(MD, spec)] == ["churn"]
    sim = Sim(spec)
    sim.run(2)
    assert children.shadow_annotations(MD, spec, sim.status, sim.deployments, pods_of(sim)) == []


def test_stable_pods_are_told_to_mirror_once_a_shadow_pod_is_ready_and_told_to_stop_after() -> None:
    steps = [{"shadow": {"duration": "60s", "percent": 50, "recordInputs": True}}, *SHADOW_STEPS[1:]]
    sim = promoted_then("2", rollout={"steps": steps})
    sim.tick()
    canary, stable = sim.status.canary, sim.status.stable
    assert canary is not None
    assert stable is not None
    name = shadow_name(canary.deployment)
    starting = {**sim.deployments, name: DeploymentObs(name, "2", 5, 0)}
    assert children.shadow_annotations(MD, sim.spec, sim.status, starting, pods_of(sim)) == []
    writes = children.shadow_annotations(MD, sim.spec, sim.status, sim.deployments, pods_of(sim))
    assert sorted(pod.rsplit("-", 1)[0] for pod, _ in writes) == [stable.deployment] * 10  # stable pods only
    value = writes[0][1]
    assert value is not None
    settings = ShadowSettings.parse(json.loads(value))  # exactly what serving reads from the file
    assert settings == ShadowSettings("churn-shadow.ml.svc", 8080, "2", 50.0, 1.0, 1e-6, True)
    mirroring = [replace(p, shadow=value if p.version == "1" else "") for p in pods_of(sim)]
    assert (
        children.shadow_annotations(MD, sim.spec, sim.status, sim.deployments, mirroring) == []
    )  # idempotent
    for _ in range(60):  # past the shadow step (60 s): every annotation removed
        if sim.status.current_step_index != 0:
            break
        sim.tick(2.0)
    assert sim.status.current_step_index == 1
    assert sim.status.stable == stable
    still = [replace(p, shadow=value) for p in pods_of(sim) if p.version == "1"]
    cleared = children.shadow_annotations(MD, sim.spec, sim.status, sim.deployments, still)
    assert cleared
    assert {v for _, v in cleared} == {None}


def test_every_serving_pod_reads_its_shadow_annotation_as_a_file() -> None:
    sim = promoted_then("2")
    p = sim.tick()
    for want in p.deployments:
        pod = children.deployment(MD, sim.spec, want)["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "shadow"]
        (item,) = volume["downwardAPI"]["items"]
        assert item == {
            "path": "shadow.json",
            "fieldRef": {"fieldPath": "metadata.annotations['mlrollout.io/shadow']"},
        }
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["MLROLLOUT_SHADOW_CONFIG"] == "/etc/mlrollout/shadow/shadow.json"


def test_the_shadow_example_is_a_valid_spec() -> None:
    import yaml

    path = Path(__file__).parents[2] / "examples" / "shadow-modeldeployment.yaml"
    (doc,) = list(yaml.safe_load_all(path.read_text()))
    spec = parse_spec(doc["spec"])
    assert isinstance(spec.steps[0], Shadow)
    assert spec.steps[0] == Shadow(600, 50, 1e-6, 1000, False)
    assert [m["name"] for m in spec.analysis["metrics"]] == [
        "agreement",
        "errorRate",
        "latencyP99Ms",
        "liveF1",
    ]

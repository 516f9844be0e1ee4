"""What a reconcile reads of its children, from the watch-fed indexes: pods' signals reach their
revision's Deployment, and nothing of another ModelDeployment leaks in."""

from __future__ import annotations

import asyncio
from typing import Any

from mlrollout.operator import handlers
from mlrollout.operator.children import (
    ANNOTATION_SHADOW,
    APP,
    LABEL_APP,
    LABEL_MD,
    LABEL_REVISION,
    LABEL_TRACK,
    LABEL_VERSION,
    SHADOW_APP,
)
from mlrollout.operator.kube import children_obs, deployment_obs, pod_obs
from mlrollout.operator.model import DeploymentObs, PodObs


def pod(name: str, version: str, revision: str, **status: Any) -> dict[str, Any]:
    labels = {LABEL_APP: APP, LABEL_MD: "md", LABEL_VERSION: version, LABEL_REVISION: revision}
    return {"metadata": {"name": name, "labels": {**labels, LABEL_TRACK: "canary"}}, "status": status}


def dep(name: str, version: str, revision: str) -> DeploymentObs:
    labels = {LABEL_APP: APP, LABEL_MD: "md", LABEL_VERSION: version, LABEL_REVISION: revision}
    labels[LABEL_TRACK] = "stable"
    return deployment_obs({"metadata": {"name": name, "labels": labels}, "spec": {"replicas": 2}})


SELECTOR_V4 = {LABEL_MD: "md", LABEL_VERSION: "4", LABEL_REVISION: "r2"}
CRASHING = {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 1}]}
READY = {"conditions": [{"type": "Ready", "status": "True"}]}
UNSCHEDULABLE = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}


def test_a_pod_reads_as_its_revision_track_shadow_and_failure_signals() -> None:
    body = pod("p1", "3", "r1", **CRASHING)
    body["metadata"]["annotations"] = {ANNOTATION_SHADOW: "canary=4"}
    assert pod_obs(body) == PodObs("p1", "3", "r1", "canary", "canary=4", crash_looping=True, app=APP)
    assert pod_obs(pod("p2", "3", "r1", **UNSCHEDULABLE)).unschedulable
    restarted = pod("p3", "3", "r1", containerStatuses=[{"state": {"running": {}}, "restartCount": 3}])
    assert pod_obs(restarted).crash_looping  # restarted three times counts as crash-looping
    assert pod_obs(pod("p4", "3", "r1")) == PodObs("p4", "3", "r1", "canary", app=APP)
    assert pod_obs(pod("p5", "3", "r1", **READY)).ready
    deleting = pod("p6", "3", "r1", **READY)
    deleting["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    assert not pod_obs(deleting).ready  # a pod being deleted no longer counts as serving
    assert not pod_obs(pod("p7", "3", "r1", conditions=[{"type": "Ready", "status": "False"}])).ready


def test_ready_pods_are_counted_per_revision_from_the_pods_not_the_deployment_status() -> None:
    """(A shadow Deployment's pods run the canary's revision: only the app label tells them apart.)"""
    stale = deployment_obs(
        {
            "metadata": {
                "name": "md-v3-r1",
                "labels": {LABEL_APP: APP, LABEL_MD: "md", LABEL_VERSION: "3", LABEL_REVISION: "r1"},
            },
            "spec": {"replicas": 2},
            "status": {"readyReplicas": 2},  # written two controllers after the pods said so
        }
    )
    shadow = deployment_obs(
        {"metadata": {"name": "md-v4-r2-shadow", "labels": {**SELECTOR_V4, LABEL_APP: SHADOW_APP}}}
    )
    shadow_pod = pod("s", "4", "r2", **READY)
    shadow_pod["metadata"]["labels"][LABEL_APP] = SHADOW_APP
    deployments, _ = children_obs(
        [stale, dep("md-v4-r2", "4", "r2"), shadow],
        [
            pod_obs(pod("a", "3", "r1", **READY)),
            pod_obs(pod("b", "3", "r1")),  # started, not Ready yet
            pod_obs(pod("c", "4", "r2", **READY)),
            pod_obs(pod("d", "4", "r2", **READY)),
            pod_obs(pod("e", "4", "r9", **READY)),  # same version, another revision
            pod_obs(shadow_pod),
        ],
    )
    assert {d.name: d.ready_replicas for d in deployments.values()} == {
        "md-v3-r1": 1,
        "md-v4-r2": 2,
        "md-v4-r2-shadow": 1,
    }


def test_pod_signals_mark_only_the_deployment_of_their_revision() -> None:
    deployments, pods = children_obs(
        [dep("md-v3-r1", "3", "r1"), dep("md-v4-r2", "4", "r2"), dep("md-v5-r3", "5", "r3")],
        [
            pod_obs(pod("a", "4", "r2", **CRASHING)),
            pod_obs(pod("b", "4", "r2")),
            pod_obs(pod("c", "5", "r3", **UNSCHEDULABLE)),
            pod_obs(pod("d", "3", "r9", **CRASHING)),  # same version, another revision
        ],
    )
    assert [(d.name, d.crash_looping, d.unschedulable) for d in deployments.values()] == [
        ("md-v3-r1", False, False),
        ("md-v4-r2", True, False),
        ("md-v5-r3", False, True),
    ]
    assert [p.name for p in pods] == ["a", "b", "c", "d"]


def test_children_come_from_the_indexes_by_namespace_and_name() -> None:
    stable = dep("md-v3-r1", "3", "r1")
    other = dep("other-v1-r1", "1", "r1")
    canary_pod = pod_obs(pod("p", "3", "r1"))
    children = handlers.Children(
        deployments={("ns", "md"): [stable], ("ns", "other"): [other], ("ns2", "md"): [other]},  # type: ignore[arg-type]
        pods={("ns", "md"): [canary_pod]},  # type: ignore[arg-type]
    )
    assert children.of("ns", "md") == ({"md-v3-r1": stable}, [canary_pod])
    assert children.of("ns", "gone") == ({}, [])
    kwargs = {"serving_deployments": children.deployments, "serving_pods": children.pods, "retry": 0}
    assert handlers.Children.of_kwargs(kwargs) == children


def test_the_index_functions_key_each_child_by_namespace_and_owner_label() -> None:
    body = pod("p1", "3", "r1")
    body["metadata"]["namespace"] = "ns"
    assert asyncio.run(handlers.serving_pods(body)) == {
        ("ns", "md"): PodObs("p1", "3", "r1", "canary", app=APP)
    }  # type: ignore[arg-type]
    d = {"metadata": {"name": "md-v3-r1", "namespace": "ns", "labels": {LABEL_MD: "md", LABEL_VERSION: "3"}}}
    assert asyncio.run(handlers.serving_deployments(d)) == {("ns", "md"): deployment_obs(d)}  # type: ignore[arg-type]

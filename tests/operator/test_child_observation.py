"""What a reconcile reads of its children, from the watch-fed indexes: pods' signals reach their
revision's Deployment, and nothing of another ModelDeployment leaks in."""

from __future__ import annotations

import asyncio
from typing import Any

from mlrollout.operator import handlers
from mlrollout.operator.children import (
    ANNOTATION_SHADOW,
    LABEL_MD,
    LABEL_REVISION,
    LABEL_TRACK,
    LABEL_VERSION,
)
from mlrollout.operator.kube import children_obs, deployment_obs, pod_obs
from mlrollout.operator.model import DeploymentObs, PodObs


def pod(name: str, version: str, revision: str, **status: Any) -> dict[str, Any]:
    labels = {LABEL_MD: "md", LABEL_VERSION: version, LABEL_REVISION: revision, LABEL_TRACK: "canary"}
    return {"metadata": {"name": name, "labels": labels}, "status": status}


def dep(name: str, version: str, revision: str) -> DeploymentObs:
    labels = {LABEL_MD: "md", LABEL_VERSION: version, LABEL_REVISION: revision, LABEL_TRACK: "stable"}
    return deployment_obs({"metadata": {"name": name, "labels": labels}, "spec": {"replicas": 2}})


CRASHING = {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 1}]}
UNSCHEDULABLE = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}


def test_a_pod_reads_as_its_revision_track_shadow_and_failure_signals() -> None:
    body = pod("p1", "3", "r1", **CRASHING)
    body["metadata"]["annotations"] = {ANNOTATION_SHADOW: "canary=4"}
    assert pod_obs(body) == PodObs("p1", "3", "r1", "canary", "canary=4", crash_looping=True)
    assert pod_obs(pod("p2", "3", "r1", **UNSCHEDULABLE)).unschedulable
    restarted = pod("p3", "3", "r1", containerStatuses=[{"state": {"running": {}}, "restartCount": 3}])
    assert pod_obs(restarted).crash_looping  # restarted three times counts as crash-looping
    assert pod_obs(pod("p4", "3", "r1")) == PodObs("p4", "3", "r1", "canary")


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
    assert asyncio.run(handlers.serving_pods(body)) == {("ns", "md"): PodObs("p1", "3", "r1", "canary")}  # type: ignore[arg-type]
    d = {"metadata": {"name": "md-v3-r1", "namespace": "ns", "labels": {LABEL_MD: "md", LABEL_VERSION: "3"}}}
    assert asyncio.run(handlers.serving_deployments(d)) == {("ns", "md"): deployment_obs(d)}  # type: ignore[arg-type]

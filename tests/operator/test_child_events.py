"""Child Deployment and pod events wake their ModelDeployment's re-plan only when what the planner reads
changed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from mlrollout.operator import handlers
from mlrollout.operator.children import LABEL_MD, LABEL_REVISION, LABEL_TRACK, LABEL_VERSION


def deployment(*, replicas: int = 2, ready: int = 1, track: str = "stable", **status: Any) -> dict[str, Any]:
    labels = {LABEL_MD: "md", LABEL_VERSION: "3", LABEL_REVISION: "r1", LABEL_TRACK: track}
    return {
        "metadata": {"name": "md-v3-r1", "namespace": "ns", "uid": "u1", "labels": labels},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready, **status},
    }


@pytest.fixture
def state() -> Iterator[handlers.ObjectState]:
    runtime = handlers.Runtime(kube=None, registries=None, analysis=None)  # type: ignore[arg-type]
    handlers._Process.runtime = runtime
    try:
        yield runtime.state("ns", "md")
    finally:
        handlers._Process.runtime = None


def pod(
    *, ready: bool = False, deleting: bool = False, track: str = "canary", **status: Any
) -> dict[str, Any]:
    labels = {LABEL_MD: "md", LABEL_VERSION: "3", LABEL_REVISION: "r1", LABEL_TRACK: track}
    meta: dict[str, Any] = {"name": "md-v3-r1-abc", "namespace": "ns", "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "status": {"conditions": conditions, **status}}


def woken(st: handlers.ObjectState, body: dict[str, Any], event: str = "MODIFIED") -> bool:
    st.wake.clear()
    asyncio.run(handlers.on_child_deployment(body, type=event))  # type: ignore[arg-type]
    return st.wake.is_set()


def pod_woken(st: handlers.ObjectState, body: dict[str, Any], event: str = "MODIFIED") -> bool:
    st.wake.clear()
    asyncio.run(handlers.on_child_pod(body, type=event))  # type: ignore[arg-type]
    return st.wake.is_set()


def test_only_changes_the_planner_reads_wake_a_re_plan(state: handlers.ObjectState) -> None:
    assert woken(state, deployment())  # first sight
    assert not woken(state, deployment(observedGeneration=4, availableReplicas=1, updatedReplicas=2))
    assert not woken(state, deployment(conditions=[{"type": "Progressing", "status": "True"}]))
    # Ready pods are counted from the pods (on_child_pod): the Deployment's status says it later
    assert not woken(state, deployment(ready=2))
    assert woken(state, deployment(ready=2, replicas=3))  # scaled
    assert woken(state, deployment(ready=2, replicas=3, track="retired"))  # relabelled
    assert woken(state, deployment(ready=2, replicas=3, track="retired"), "DELETED")
    assert woken(state, deployment(ready=2, replicas=3, track="retired"))  # seen again after a deletion


def test_a_deployment_of_an_unknown_model_deployment_is_ignored(state: handlers.ObjectState) -> None:
    body = deployment()
    body["metadata"]["labels"][LABEL_MD] = "other"
    assert not woken(state, body)
    assert ("ns", "other") not in handlers.runtime().objects


def test_a_pod_wakes_a_re_plan_when_it_starts_or_stops_serving_or_fails(state: handlers.ObjectState) -> None:
    assert not pod_woken(state, pod())  # first sight, not Ready: nothing a plan counts
    assert pod_woken(state, pod(ready=True))  # became Ready
    assert not pod_woken(state, pod(ready=True, track="stable"))  # our own relabel
    assert not pod_woken(state, pod(ready=True, podIP="10.0.0.7"))
    assert pod_woken(state, pod(ready=True, deleting=True))  # being deleted: no longer counted
    assert not pod_woken(state, pod(ready=True, deleting=True), "DELETED")  # already not counted
    crashing = {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
    assert pod_woken(state, pod(**crashing))
    assert pod_woken(state, pod(**crashing), "DELETED")  # a failing pod gone


def test_a_pod_of_an_unknown_model_deployment_is_ignored(state: handlers.ObjectState) -> None:
    body = pod(ready=True)
    body["metadata"]["labels"][LABEL_MD] = "other"
    assert not pod_woken(state, body)

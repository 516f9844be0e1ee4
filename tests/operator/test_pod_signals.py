"""Reading crash loops and unschedulable pods from real Kubernetes client models."""

from __future__ import annotations

from kubernetes_asyncio.client import (
    V1ContainerState,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Pod,
    V1PodCondition,
    V1PodStatus,
)
from mlrollout.operator.kube import crash_looping, unschedulable


def pod(*, waiting: str | None = None, restarts: int = 0, scheduled: str | None = None) -> V1Pod:
    statuses = [
        V1ContainerStatus(
            name="serving",
            image="i",
            image_id="",
            ready=False,
            restart_count=restarts,
            state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting)) if waiting else None,
        )
    ]
    conditions = [V1PodCondition(type="PodScheduled", status="False", reason=scheduled)] if scheduled else []
    return V1Pod(status=V1PodStatus(container_statuses=statuses, conditions=conditions))


def test_crash_loop_signals() -> None:
    assert crash_looping(pod(waiting="CrashLoopBackOff"))
    assert crash_looping(pod(restarts=3))
    assert not crash_looping(pod(waiting="ContainerCreating", restarts=1))
    assert not crash_looping(V1Pod(status=None))


def test_unschedulable_signal() -> None:
    assert unschedulable(pod(scheduled="Unschedulable"))
    assert not unschedulable(pod())
    assert not unschedulable(V1Pod(status=None))

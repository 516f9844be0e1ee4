"""Reading crash loops and unschedulable pods from the API's JSON (built from the Kubernetes client's
models and serialised as the apiserver sends them, so the wire field names are the real ones)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client import (
    V1ContainerState,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Pod,
    V1PodCondition,
    V1PodStatus,
)
from mlrollout.operator.kube import crash_looping, unschedulable


def wire(model: Any) -> Any:
    """A client model as the apiserver sends it: the JSON names from the model's attribute_map."""
    if isinstance(model, list):
        return [wire(m) for m in model]
    if hasattr(model, "attribute_map"):
        values = {model.attribute_map[k]: getattr(model, k) for k in model.openapi_types}
        return {k: wire(v) for k, v in values.items() if v is not None}
    return model


def pod(*, waiting: str | None = None, restarts: int = 0, scheduled: str | None = None) -> dict[str, Any]:
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
    return wire(V1Pod(status=V1PodStatus(container_statuses=statuses, conditions=conditions)))


def test_crash_loop_signals() -> None:
    assert crash_looping(pod(waiting="CrashLoopBackOff"))
    assert crash_looping(pod(restarts=3))
    assert not crash_looping(pod(waiting="ContainerCreating", restarts=1))
    assert not crash_looping(wire(V1Pod(status=None)))


def test_unschedulable_signal() -> None:
    assert unschedulable(pod(scheduled="Unschedulable"))
    assert not unschedulable(pod())
    assert not unschedulable(wire(V1Pod(status=None)))

"""The applier against a recording fake of the Kube layer: what it calls, in which order, and what it
remembers only after a call succeeded."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from mlrollout.operator.applier import ServiceMemory, apply_plan
from mlrollout.operator.model import DeploymentObs, Status, Track
from mlrollout.operator.planner import AliasMove, DesiredDeployment, Event, Plan
from mlrollout.operator.spec import parse_spec

MD: dict[str, Any] = {
    "metadata": {"name": "churn", "namespace": "ml", "uid": "u-1"},
    "spec": {"model": {"name": "churn", "version": "2"}, "serving": {"image": "serve:1", "replicas": 2}},
    "status": {},
}
SPEC = parse_spec(MD["spec"])
STABLE = DesiredDeployment("churn-v2-abc", "2", "file:///a/2", 2, "stable", "abc")


@dataclass
class FakeKube:
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_service: int = 0  # the next N Service applies fail

    async def apply_deployment(self, manifest: dict[str, Any]) -> None:
        self.calls.append(("apply_deployment", manifest["metadata"]["name"]))

    async def scale_deployment(self, namespace: str, name: str, replicas: int, track: str) -> None:
        self.calls.append(("scale", f"{name}={replicas}/{track}"))

    async def apply_service(self, manifest: dict[str, Any]) -> None:
        if self.fail_service:
            self.fail_service -= 1
            raise OSError("connection reset by peer")
        self.calls.append(("apply_service", manifest["metadata"]["name"]))

    async def delete_deployment(self, namespace: str, name: str) -> None:
        self.calls.append(("delete", name))

    async def label_pod(self, namespace: str, name: str, track: str) -> None:
        self.calls.append(("label", name))

    async def patch_status(self, namespace: str, name: str, status: Any) -> None:
        self.calls.append(("status", status.get("phase") or json.dumps(status)))


@dataclass
class FakeRegistry:
    calls: list[tuple[str, ...]] = field(default_factory=list)
    fail_alias: bool = False

    async def tag(self, name: str, version: str, key: str, value: str) -> None:
        self.calls.append(("tag", version, value))

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        if self.fail_alias:
            raise OSError("registry down")
        self.calls.append(("alias", alias, version))


def apply(
    kube: FakeKube,
    plan: Plan,
    memory: ServiceMemory,
    *,
    observed: dict[str, DeploymentObs] | None = None,
    registry: FakeRegistry | None = None,
    md: dict[str, Any] = MD,
) -> list[Event]:
    events: list[Event] = []
    asyncio.run(
        apply_plan(
            kube,  # type: ignore[arg-type]
            md,
            SPEC,
            plan,
            observed=observed or {},
            pods=[],
            post_event=events.append,
            registry=registry,
            service=memory,
        )
    )
    return events


def test_a_failed_service_apply_is_retried_and_a_good_one_is_not_repeated() -> None:
    kube, memory = FakeKube(fail_service=1), ServiceMemory()
    plan = Plan(status=Status(phase="Progressing"), deployments=(STABLE,))
    with pytest.raises(OSError, match="connection reset"):
        apply(kube, plan, memory)
    assert memory.digest == ""  # not remembered: the Service does not exist
    apply(kube, plan, memory)
    assert kube.calls.count(("apply_service", "churn")) == 1
    assert memory.digest != ""
    apply(kube, plan, memory)
    assert kube.calls.count(("apply_service", "churn")) == 1  # unchanged: not re-applied


def test_status_is_written_once_and_only_when_it_changed() -> None:
    kube, memory = FakeKube(), ServiceMemory()
    status = Status(phase="Promoted", stable=Track("2", "file:///a/2", "churn-v2-abc", serving_hash="abc"))
    plan = Plan(status=status, deployments=(STABLE,))
    apply(kube, plan, memory)
    assert [c for c in kube.calls if c[0] == "status"] == [("status", "Promoted")]
    unchanged = {**MD, "status": status.to_dict()}
    kube.calls.clear()
    apply(kube, plan, memory, md=unchanged)
    assert [c for c in kube.calls if c[0] == "status"] == []


def test_a_draining_deployment_is_left_as_it_is_and_never_created() -> None:
    kube, memory = FakeKube(), ServiceMemory()
    draining = DesiredDeployment("churn-v3-abc", "3", "", 2, "canary", draining=True)
    gone = DesiredDeployment("churn-v4-abc", "4", "", 1, "canary", draining=True)
    observed = {"churn-v3-abc": DeploymentObs("churn-v3-abc", "3", 2, 2, track="canary")}
    plan = Plan(status=Status(), deployments=(STABLE, draining, gone))
    apply(kube, plan, memory, observed=observed)
    assert ("apply_deployment", "churn-v2-abc") in kube.calls
    assert not [c for c in kube.calls if "churn-v3" in c[1] or "churn-v4" in c[1]]


def test_alias_moves_follow_the_plan_clear_pending_on_success_and_a_failure_is_a_warning_event() -> None:
    kube, memory, registry = FakeKube(), ServiceMemory(), FakeRegistry()
    move = AliasMove("champion", "2")
    plan = Plan(status=Status(pending_alias=move), deployments=(STABLE,), aliases=(move,))
    events = apply(kube, plan, memory, registry=registry)
    assert registry.calls == [("alias", "champion", "2")]
    assert [(e.type, e.reason) for e in events] == [("Normal", "AliasMoved")]
    assert ("status", json.dumps({"pendingAlias": None})) in kube.calls
    kube = FakeKube()
    events = apply(kube, plan, memory, registry=FakeRegistry(fail_alias=True))
    assert [(e.type, e.reason) for e in events] == [("Warning", "AliasMoveFailed")]
    assert "retried" in events[0].message
    assert not [c for c in kube.calls if "pendingAlias" in c[1] and "null" in c[1]]  # still pending

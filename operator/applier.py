"""Carry a Plan out: children first (so status never claims what does not exist), then status
(only when it changed), then Events and registry tags. Every call is idempotent."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from mlrollout.operator import children
from mlrollout.operator.kube import Kube
from mlrollout.operator.model import DeploymentObs, PodObs
from mlrollout.operator.planner import DesiredDeployment, Event, Plan
from mlrollout.operator.registry import Registry
from mlrollout.operator.spec import Spec

log = logging.getLogger(__name__)

PostEvent = Callable[[Event], None]


def status_changed(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Compare only the fields the planner manages; nulls mean absent."""
    current = current or {}
    for key, value in new.items():
        have = current.get(key)
        if value in (None, []) and have in (None, []):
            continue
        if have != value:
            return True
    return False


def pod_relabels(deployments: Sequence[DesiredDeployment], pods: Sequence[PodObs]) -> list[tuple[str, str]]:
    """(pod, track) for pods whose track label lags their Deployment's role. Labelling pods in
    place keeps metrics' `track` right after a promotion without restarting anything."""
    track = {(d.version, d.revision): d.track for d in deployments}
    out: list[tuple[str, str]] = []
    for pod in pods:
        want = track.get((pod.version, pod.revision))
        if want is not None and pod.track != want:
            out.append((pod.name, want))
    return out


async def apply_plan(
    kube: Kube,
    md: Mapping[str, Any],
    spec: Spec,
    plan: Plan,
    *,
    observed: Mapping[str, DeploymentObs],
    pods: Sequence[PodObs],
    post_event: PostEvent,
    registry: Registry | None,
    service_applied: Callable[[str], Awaitable[bool]],
) -> None:
    meta = md["metadata"]
    namespace, name = meta["namespace"], meta["name"]

    for want in plan.deployments:
        have = observed.get(want.name)
        if have is None:
            await kube.apply_deployment(children.deployment(md, spec, want))
        elif have.replicas != want.replicas or have.track != want.track:
            await kube.scale_deployment(namespace, want.name, want.replicas, want.track)
    if plan.deployments:
        svc = children.service(md, spec)
        if not await service_applied(json.dumps(svc, sort_keys=True)):
            await kube.apply_service(svc)
    for gone in plan.delete:
        await kube.delete_deployment(namespace, gone)
    for pod, track in pod_relabels(plan.deployments, pods):
        await kube.label_pod(namespace, pod, track)

    new_status = plan.status.to_dict()
    if status_changed(md.get("status"), new_status):
        await kube.patch_status(namespace, name, new_status)

    for event in plan.events:
        post_event(event)
    for tag in plan.tags:
        if registry is None:
            break
        try:
            await registry.tag(spec.model.name, tag.version, tag.key, tag.value)
        except Exception as exc:  # a tag is a courtesy; never block the rollout on it
            log.warning(
                "could not tag %s version %s %s=%s: %s", spec.model.name, tag.version, tag.key, tag.value, exc
            )

"""Carry a Plan out: children first (so status never claims what does not exist), then status
(once, only when it changed), then Events, registry tags and alias moves. Every call is idempotent."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlrollout.operator import children
from mlrollout.operator.kube import Kube
from mlrollout.operator.model import DeploymentObs, PodObs
from mlrollout.operator.planner import DesiredDeployment, Event, Plan
from mlrollout.operator.registry import Registry
from mlrollout.operator.routers import IngressWrite
from mlrollout.operator.spec import Spec

log = logging.getLogger(__name__)

PostEvent = Callable[[Event], None]


@dataclass
class ServiceMemory:
    """The digest of the Service manifest last applied *successfully* (per ModelDeployment, in
    memory): an unchanged manifest is not re-applied, a failed apply is retried next pass."""

    digest: str = ""


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
    track = {(d.version, d.revision): d.track for d in deployments if not d.draining}
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
    service: ServiceMemory,
) -> None:
    meta = md["metadata"]
    namespace, name = meta["namespace"], meta["name"]

    for want in plan.deployments:
        have = observed.get(want.name)
        if have is None:
            if not want.draining:
                await kube.apply_deployment(children.deployment(md, spec, want))
        elif have.replicas != want.replicas or have.track != want.track:
            await kube.scale_deployment(namespace, want.name, want.replicas, want.track)
    if plan.deployments:
        svcs = children.services(md, spec)
        digest = json.dumps(svcs, sort_keys=True)
        if service.digest != digest:
            for svc in svcs:
                await kube.apply_service(svc)
            service.digest = digest  # only after every apply succeeded
    for gone in plan.delete:
        await kube.delete_deployment(namespace, gone)
    for pod, track in pod_relabels(plan.deployments, pods):
        await kube.label_pod(namespace, pod, track)
    for pod, settings in children.shadow_annotations(md, spec, plan.status, observed, pods):
        await kube.annotate_pod(namespace, pod, children.ANNOTATION_SHADOW, settings)  # what to mirror

    if isinstance(plan.route, IngressWrite):
        # The nginx router's own canary Ingress: applied whole (server-side apply) or deleted.
        if plan.route.manifest is None:
            await kube.delete_ingress(namespace, plan.route.name)
        else:
            await kube.apply_ingress(children.canary_ingress(md, plan.route.manifest))
    elif plan.route is not None:
        # Guarded by the resourceVersion it was planned from: a route the user edited meanwhile is
        # not overwritten; the next pass plans from the new one.
        await kube.write_route(namespace, plan.route)

    new_status = plan.status.to_dict()
    if status_changed(md.get("status"), new_status):
        await kube.patch_status(namespace, name, new_status)

    for event in plan.events:
        post_event(event)
    if registry is None:
        return
    for tag in plan.tags:
        try:
            await registry.tag(spec.model.name, tag.version, tag.key, tag.value)
        except Exception as exc:  # a tag is a courtesy; never block the rollout on it
            log.warning(
                "could not tag %s version %s %s=%s: %s", spec.model.name, tag.version, tag.key, tag.value, exc
            )
    for move in plan.aliases:
        try:
            await registry.set_alias(spec.model.name, move.alias, move.version)
        except Exception as exc:  # serving is already right; say so loudly, never undo a promotion
            message = (
                f"could not move alias {move.alias!r} of {spec.model.name} to version {move.version} "
                f"(retried while status.pendingAlias names it): {exc}"
            )
            log.warning("%s", message)
            post_event(Event("Warning", "AliasMoveFailed", message[:1024]))
            continue
        post_event(
            Event(
                "Normal",
                "AliasMoved",
                f"MLflow alias {move.alias!r} of {spec.model.name} -> version {move.version}",
            )
        )
        if plan.status.pending_alias == move:
            await kube.patch_status(namespace, name, {"pendingAlias": None})

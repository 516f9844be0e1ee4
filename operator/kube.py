"""The few Kubernetes API calls the operator makes, each idempotent (SSA; delete 404 = done), and
what it reads of its children. Those reads come from kopf's watch-fed indexes (handlers.py), not from
a LIST per reconcile: a label-selected LIST makes the apiserver filter every Deployment or pod of the
namespace, once per reconcile of every object (benchmarks/operator/RESULTS.md)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from mlrollout.operator.children import (
    ANNOTATION_SHADOW,
    FIELD_MANAGER,
    LABEL_APP,
    LABEL_REVISION,
    LABEL_TRACK,
    LABEL_VERSION,
)
from mlrollout.operator.model import DeploymentObs, IngressObs, IngressPairObs, PodObs, RouteObs, RouteParent
from mlrollout.operator.routers import RouteWrite
from mlrollout.operator.routers.nginx import ingress_obs
from mlrollout.operator.spec import GROUP, PLURAL, VERSION

_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTES = "gateway.networking.k8s.io", "v1", "httproutes"
NETWORKING_GROUP, NETWORKING_VERSION, INGRESSES = "networking.k8s.io", "v1", "ingresses"
log = logging.getLogger(__name__)


PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy"})


def api_client() -> client.ApiClient:
    """The generated client without two thread-pool hops per request. Its aiohttp session is made with
    trust_env=True, so each call looks up ~/.netrc and the proxy variables in a worker thread (a
    measurable share of the operator's CPU with 100 rollouts in flight, benchmarks/operator/RESULTS.md).
    The client authenticates with its kubeconfig or service account, never netrc; with no proxy
    variable set there is nothing else to find. With one set, the session is left as it was."""
    api = client.ApiClient()
    if not any(name.lower() in PROXY_VARIABLES for name in os.environ):
        api.rest_client.pool_manager._trust_env = False
    return api


async def _raw(call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One call of the generated client, answered as plain JSON: building its typed models (every
    field of every Deployment and pod, each through a validating setter) cost more CPU than the
    rest of a reconcile, and the operator reads a handful of fields. Non-2xx raises ApiException
    with the status and body, as the typed calls do."""
    resp = await call(*args, _preload_content=False, **kwargs)
    try:
        data = await resp.read()
    finally:
        resp.release()
    if not 200 <= resp.status <= 299:
        exc = ApiException(status=resp.status, reason=resp.reason)
        exc.body = data.decode("utf-8", "replace")
        raise exc
    return dict(json.loads(data)) if data else {}


def namespace_terminating(exc: ApiException) -> bool:
    """The write was refused because its namespace is being deleted (the namespace controller is
    removing everything in it, the ModelDeployment included): nothing to retry."""
    if exc.status != 403 or not exc.body:
        return False
    try:
        causes = (json.loads(exc.body).get("details") or {}).get("causes") or []
    except (ValueError, AttributeError):
        return False
    return any(c.get("reason") == "NamespaceTerminating" for c in causes if isinstance(c, dict))


def crash_looping(pod: Mapping[str, Any]) -> bool:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff" or (cs.get("restartCount") or 0) >= 3:
            return True
    return False


def unschedulable(pod: Mapping[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
        for c in conds
    )


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Counted as serving: its Ready condition is True and it is not being deleted (what the
    ReplicaSet controller counts in readyReplicas)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def pod_obs(pod: Mapping[str, Any]) -> PodObs:
    """What the operator reads of one serving pod: its revision, track, shadow settings, whether it
    serves, and whether it fails in a way that should end a rollout early."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return PodObs(
        name=meta.get("name", ""),
        version=labels.get(LABEL_VERSION, ""),
        revision=labels.get(LABEL_REVISION, ""),
        track=labels.get(LABEL_TRACK, ""),
        shadow=(meta.get("annotations") or {}).get(ANNOTATION_SHADOW, ""),
        crash_looping=crash_looping(pod),
        unschedulable=unschedulable(pod),
        ready=pod_ready(pod),
        app=labels.get(LABEL_APP, ""),
    )


def children_obs(
    deployments: Iterable[DeploymentObs], pods: Iterable[PodObs]
) -> tuple[dict[str, DeploymentObs], list[PodObs]]:
    """One ModelDeployment's Deployments by name, with their Ready pods counted from the pods
    themselves, each marked crash-looping or unschedulable when one of its revision's pods is, and
    its pods.

    Ready is counted here, not read from the Deployment's status: that figure reaches the operator
    after two more controllers have written theirs (the ReplicaSet's status, then the Deployment's),
    seconds late on a busy control plane, and every transition waits on it. A revision's pod template
    never changes, so the pods with its selector's labels (app, version, revision: a shadow
    Deployment runs the canary's revision under its own app label) are exactly its ReplicaSet's."""
    pods = list(pods)
    crash = {(p.version, p.revision) for p in pods if p.crash_looping}
    unsched = {(p.version, p.revision) for p in pods if p.unschedulable}
    ready = Counter((p.app, p.version, p.revision) for p in pods if p.ready)
    out: dict[str, DeploymentObs] = {}
    for obs in deployments:
        key = (obs.version, obs.revision)
        out[obs.name] = replace(
            obs,
            ready_replicas=ready[(obs.app, *key)],
            crash_looping=key in crash,
            unschedulable=key in unsched,
        )
    return out, pods


def deployment_obs(d: Mapping[str, Any]) -> DeploymentObs:
    """What the planner reads of one serving Deployment; its Ready pods and their failure signals are
    added by children_obs, so a status-only event of the Deployment changes nothing here."""
    meta = d.get("metadata") or {}
    labels = meta.get("labels") or {}
    return DeploymentObs(
        name=meta.get("name", ""),
        version=labels.get(LABEL_VERSION, ""),
        replicas=(d.get("spec") or {}).get("replicas") or 0,
        ready_replicas=0,
        track=labels.get(LABEL_TRACK, ""),
        uid=meta.get("uid") or "",
        revision=labels.get(LABEL_REVISION, ""),
        app=labels.get(LABEL_APP, ""),
    )


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        # Typed as Any: the generated client accepts `_content_type` (needed for server-side apply
        # and merge patches) through **kwargs that its signatures do not declare.
        self.apps: Any = client.AppsV1Api(api)
        self.core: Any = client.CoreV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)
        # The resourceVersion of each ModelDeployment as we last read or wrote it: a watch-fed body
        # at that version is as fresh as a GET would be for everything we did ourselves.
        self._known: dict[tuple[str, str], str] = {}

    def _remember(self, obj: Mapping[str, Any] | None) -> None:
        meta = (obj or {}).get("metadata") or {}
        if meta.get("resourceVersion"):
            self._known[(str(meta.get("namespace")), str(meta.get("name")))] = str(meta["resourceVersion"])

    def forget(self, namespace: str, name: str) -> None:
        self._known.pop((namespace, name), None)

    async def apply_deployment(self, manifest: dict[str, Any]) -> None:
        await _server_side_apply(self.apps.patch_namespaced_deployment, manifest)

    async def scale_deployment(self, namespace: str, name: str, replicas: int, track: str) -> None:
        """Existing revisions only change size and role; their pod template stays as created."""
        body = {"metadata": {"labels": {LABEL_TRACK: track}}, "spec": {"replicas": replicas}}
        await _raw(self.apps.patch_namespaced_deployment, name, namespace, body, _content_type=_MERGE)

    async def label_pod(self, namespace: str, name: str, track: str) -> None:
        try:
            body = {"metadata": {"labels": {LABEL_TRACK: track}}}
            await _raw(self.core.patch_namespaced_pod, name, namespace, body, _content_type=_MERGE)
        except ApiException as exc:
            if exc.status != 404:  # a pod that is gone needs no label
                raise

    async def apply_service(self, manifest: dict[str, Any]) -> None:
        await _server_side_apply(self.core.patch_namespaced_service, manifest)

    async def annotate_pod(self, namespace: str, name: str, key: str, value: str | None) -> None:
        """Set (or, with None, remove) one annotation of a pod; a pod that is gone needs none."""
        try:
            body = {"metadata": {"annotations": {key: value}}}
            await _raw(self.core.patch_namespaced_pod, name, namespace, body, _content_type=_MERGE)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def service_exists(self, namespace: str, name: str) -> bool:
        try:
            await _raw(self.core.read_namespaced_service, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def delete_deployment(self, namespace: str, name: str) -> None:
        try:
            await _raw(
                self.apps.delete_namespaced_deployment, name, namespace, propagation_policy="Background"
            )
        except ApiException as exc:
            if exc.status != 404:  # already gone is the goal
                raise

    async def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                self.forget(namespace, name)
                return None
            raise
        self._remember(obj)
        return obj

    async def current_model_deployment(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """The ModelDeployment to plan from: the watch-fed `body` itself when it is at the version we
        last read or wrote (nothing of ours is missing from it), else a fresh GET. A body that lags our
        own status write would make the planner repeat decisions; one that lags someone else's write
        is as good as a GET racing that write, and the watch event that follows re-plans anyway."""
        meta = body["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        version = meta.get("resourceVersion")
        if version and self._known.get((namespace, name)) == version:
            return copy.deepcopy(dict(body))
        return await self.get_model_deployment(namespace, name)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        obj = await self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}, _content_type=_MERGE
        )
        self._remember(obj if isinstance(obj, Mapping) else None)

    async def observe_route(self, namespace: str, name: str) -> RouteObs:
        """The HTTPRoute a gatewayAPI router manages, with what each Gateway said about it."""
        try:
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, namespace, HTTPROUTES, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return RouteObs(name, exists=False)
            raise
        return route_obs(obj)

    async def write_route(self, namespace: str, write: RouteWrite) -> None:
        body = {"metadata": {"resourceVersion": write.resource_version}, "spec": {"rules": list(write.rules)}}
        try:
            await self.custom.patch_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, namespace, HTTPROUTES, write.name, body, _content_type=_MERGE
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            log.info(
                "%s/%s changed since it was read; re-planning from the new version", namespace, write.name
            )

    async def observe_ingresses(self, namespace: str, primary: str, canary: str) -> IngressPairObs:
        """The nginx router's Ingresses: the user's primary and the operator's canary."""
        got = await asyncio.gather(self._ingress(namespace, primary), self._ingress(namespace, canary))
        return IngressPairObs(*got)

    async def _ingress(self, namespace: str, name: str) -> IngressObs:
        try:
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                NETWORKING_GROUP, NETWORKING_VERSION, namespace, INGRESSES, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return IngressObs(name, exists=False)
            raise
        return ingress_obs(obj)

    async def apply_ingress(self, manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        await self.custom.patch_namespaced_custom_object(
            NETWORKING_GROUP, NETWORKING_VERSION, meta["namespace"], INGRESSES, meta["name"], manifest,
            field_manager=FIELD_MANAGER, force=True, _content_type=_APPLY,
        )  # fmt: skip

    async def delete_ingress(self, namespace: str, name: str) -> None:
        try:
            await self.custom.delete_namespaced_custom_object(
                NETWORKING_GROUP, NETWORKING_VERSION, namespace, INGRESSES, name
            )
        except ApiException as exc:
            if exc.status != 404:  # already gone is the goal
                raise

    async def patch_spec(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        obj = await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, dict(patch), _content_type=_MERGE
        )
        self._remember(obj if isinstance(obj, Mapping) else None)


async def _server_side_apply(patch: Callable[..., Awaitable[Any]], manifest: dict[str, Any]) -> None:
    """Server-side apply as our field manager: idempotent, and `force` takes back fields a human
    edited by hand (the ModelDeployment is the source of truth for its children)."""
    meta = manifest["metadata"]
    await _raw(
        patch,
        meta["name"],
        meta["namespace"],
        manifest,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=_APPLY,
    )


def route_obs(obj: Mapping[str, Any]) -> RouteObs:
    """An HTTPRoute as the planner sees it: its rules and each parent Gateway's conditions."""
    meta = obj.get("metadata") or {}
    parents: list[RouteParent] = []
    for parent in (obj.get("status") or {}).get("parents") or []:
        conditions = {c.get("type"): c for c in parent.get("conditions") or []}
        accepted, resolved = conditions.get("Accepted") or {}, conditions.get("ResolvedRefs") or {}
        bad = next((c for c in (accepted, resolved) if c.get("status") != "True"), {})
        seen = [int(c.get("observedGeneration") or 0) for c in (accepted, resolved) if c]
        ref = parent.get("parentRef") or {}
        parents.append(
            RouteParent(
                gateway=f"{ref.get('namespace') or meta.get('namespace', '')}/{ref.get('name', '')}",
                observed_generation=min(seen) if seen else 0,
                accepted=accepted.get("status") == "True",
                resolved_refs=resolved.get("status") == "True",
                reason=str(bad.get("reason") or ""),
                message=str(bad.get("message") or ""),
            )
        )
    return RouteObs(
        name=str(meta.get("name", "")),
        exists=True,
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
        rules=tuple((obj.get("spec") or {}).get("rules") or ()),
        parents=tuple(parents),
    )

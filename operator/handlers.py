"""kopf wiring. One reconcile function serves create, resume and spec updates; a per-object daemon
re-runs it when the plan asks (pause timers, waiting on pods, alias refresh) or when an owned
Deployment changes. Handlers stay thin: observe, plan (pure), apply.

Canary analysis is one more observation: `AnalysisRunner.tick` says whether a run is due and runs
it; the planner decides what to record and announce; the applier writes status once.

Run: `python -m mlrollout.operator --standalone`
  or: `python -m mlrollout.operator --peering NAME` (HA; a random priority per replica).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import kopf
import prometheus_client
from kubernetes_asyncio import config
from kubernetes_asyncio.client.exceptions import ApiException
from mlrollout.operator.analysis.metrics import AnalysisMetrics
from mlrollout.operator.analysis.runner import AnalysisRunner
from mlrollout.operator.applier import ServiceMemory, apply_plan
from mlrollout.operator.children import LABEL_MD
from mlrollout.operator.kopf_diffbase import SlimDiffBaseStorage
from mlrollout.operator.kopf_index_release import install as release_index_toggles_of_stopped_watchers
from mlrollout.operator.kube import (
    Kube,
    api_client,
    children_obs,
    deployment_obs,
    namespace_terminating,
    pod_obs,
)
from mlrollout.operator.model import (
    Condition,
    DeploymentObs,
    Observed,
    PodObs,
    ProxyObs,
    RegistryFailure,
    Resolution,
    Status,
)
from mlrollout.operator.planner import Event, needs_resolution, plan, router_for
from mlrollout.operator.planner.shadow import current_shadow
from mlrollout.operator.registry import RegistryPool
from mlrollout.operator.routers.nginx import NginxRouter
from mlrollout.operator.spec import GROUP, PLURAL, VERSION, InvalidSpec, parse_spec

log = logging.getLogger("mlrollout.operator")

IDLE_SECONDS = float(os.environ.get("MLROLLOUT_RESYNC_SECONDS", "60"))  # level-based resync when idle
FINALIZER = "mlrollout.io/finalizer"
QUIET_POD = (False, False, False)  # a pod's (Ready, crash-looping, unschedulable) before any is seen
PREFIX = "mlrollout.io"


@dataclass
class ObjectState:
    """In-process state for one ModelDeployment: serialises reconciles, wakes its daemon."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    next_delay: float = IDLE_SECONDS
    service: ServiceMemory = field(default_factory=ServiceMemory)
    # What the planner last read of each child Deployment: events that change nothing of it (status
    # conditions, observedGeneration, updated/available counts) wake no re-plan.
    children: dict[str, DeploymentObs] = field(default_factory=dict)
    # Per serving pod, the signals a plan reads of it (Ready, crash-looping, unschedulable).
    pods: dict[str, tuple[bool, bool, bool]] = field(default_factory=dict)


@cache
def analysis_metrics() -> AnalysisMetrics:
    """One set per process: prometheus_client refuses to register the same names twice."""
    return AnalysisMetrics()


@dataclass
class Runtime:
    kube: Kube
    registries: RegistryPool
    analysis: AnalysisRunner
    objects: dict[tuple[str, str], ObjectState] = field(default_factory=dict)

    def state(self, namespace: str, name: str) -> ObjectState:
        return self.objects.setdefault((namespace, name), ObjectState())


# kopf holds handlers until every index is complete, and leaks that hold when a watcher stops before
# its first listing (a served namespace deleted while this replica stood by): see the module.
release_index_toggles_of_stopped_watchers()


class _Process:
    """The one Runtime of this operator process (set at startup)."""

    runtime: Runtime | None = None


def runtime() -> Runtime:
    if _Process.runtime is None:
        raise kopf.TemporaryError("operator is still starting", delay=1)
    return _Process.runtime


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    # kopf's own annotations storage, minus a deep copy of status and managedFields per event.
    settings.persistence.diffbase_storage = SlimDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # our own Events carry the decisions
    settings.watching.server_timeout = 300
    settings.batching.worker_limit = int(os.environ.get("MLROLLOUT_WORKERS", "200"))
    # How long this replica's peering entry counts as alive: a standby takes over this long after
    # the active replica died without saying goodbye (kill -9, node loss). kopf's default is 60 s.
    lifetime = os.environ.get("MLROLLOUT_PEERING_LIFETIME")
    if lifetime:
        settings.peering.lifetime = int(lifetime)
    # Replicas limited to some namespaces (--namespace) still elect through the one
    # ClusterKopfPeering the install ships and its RBAC grants, not a KopfPeering per namespace.
    settings.peering.clusterwide = True
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    metrics_port = os.environ.get("MLROLLOUT_METRICS_PORT")
    if metrics_port:  # the operator's own Prometheus metrics (analysis measurements and verdicts)
        address = os.environ.get("MLROLLOUT_METRICS_ADDRESS", "0.0.0.0")
        analysis_metrics()  # declare the families from the start, before any canary is analysed
        prometheus_client.start_http_server(int(metrics_port), addr=address)
        logging.getLogger(__name__).info("metrics on http://%s:%s/metrics", address, metrics_port)
    api = api_client()
    _Process.runtime = Runtime(
        kube=Kube(api),
        registries=RegistryPool(os.environ.get("MLROLLOUT_TRACKING_URI")),
        analysis=AnalysisRunner(
            analysis_metrics(), default_prometheus=os.environ.get("MLROLLOUT_PROMETHEUS_URL")
        ),
    )


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def forget_metrics(namespace: str | None, name: str | None, **_: Any) -> None:
    """A deleted ModelDeployment leaves no stale series behind (optional: needs no finalizer)."""
    if namespace and name:
        analysis_metrics().forget(namespace, name)


@kopf.on.cleanup()
async def close_clients(**_: Any) -> None:
    if _Process.runtime is not None:
        await _Process.runtime.analysis.close()
        await _Process.runtime.registries.close()


def _post(body: kopf.Body) -> Any:
    def post(event: Event) -> None:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1024])

    return post


# Watch-fed caches of every serving Deployment and pod, keyed by (namespace, ModelDeployment): what a
# reconcile reads of its children, with no request to the apiserver. kopf fills them from its initial
# listing before any handler runs, and updates them before the child-event handler below wakes a
# re-plan, so a re-plan woken by a child sees that child's change. Between our own write and its
# watch event a re-plan may see the child as it was; every write here is idempotent, so it repeats
# the write, the way an informer-based controller does.
DeploymentIndex = kopf.Index[tuple[str, str], DeploymentObs]
PodIndex = kopf.Index[tuple[str, str], PodObs]


@kopf.index("apps", "v1", "deployments", labels={LABEL_MD: kopf.PRESENT})
async def serving_deployments(body: kopf.Body, **_: Any) -> dict[tuple[str, str], DeploymentObs]:
    meta = body["metadata"]
    return {(str(meta["namespace"]), str(meta["labels"][LABEL_MD])): deployment_obs(body)}


@kopf.index("", "v1", "pods", labels={LABEL_MD: kopf.PRESENT})
async def serving_pods(body: kopf.Body, **_: Any) -> dict[tuple[str, str], PodObs]:
    meta = body["metadata"]
    return {(str(meta["namespace"]), str(meta["labels"][LABEL_MD])): pod_obs(body)}


@dataclass(frozen=True)
class Children:
    """The two indexes, as kopf hands them to each handler."""

    deployments: DeploymentIndex
    pods: PodIndex

    @classmethod
    def of_kwargs(cls, kwargs: Mapping[str, Any]) -> Children:
        """kopf passes each index as the keyword named after its function; its handler protocols
        declare no such keyword, so handlers take them through **kwargs."""
        return cls(kwargs["serving_deployments"], kwargs["serving_pods"])

    def of(self, namespace: str, name: str) -> tuple[dict[str, DeploymentObs], list[PodObs]]:
        key = (namespace, name)
        return children_obs(self.deployments.get(key, ()), self.pods.get(key, ()))


async def reconcile(body: kopf.Body, children: Children, *, raise_invalid: bool) -> float | None:
    """Observe, plan, apply. Returns when to look again (seconds) or None."""
    rt = runtime()
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    st = rt.state(namespace, name)
    async with st.lock:
        # Never plan from a body that predates our own last status write (a watch event in flight):
        # that would repeat decisions. The body is used as it is when it is at that write's version.
        current = await rt.kube.current_model_deployment(body)
        if current is None:
            return None
        meta = current["metadata"]
        try:
            spec = parse_spec(current.get("spec") or {})
        except InvalidSpec as exc:
            await _report_invalid(rt, body, current, str(exc))
            if raise_invalid:
                raise kopf.PermanentError(f"invalid spec: {exc}") from exc
            return None
        status = Status.from_dict(current.get("status"))
        now = datetime.now(UTC)
        registry = rt.registries.for_uri(spec.tracking_uri)

        async def ask_registry() -> Resolution | RegistryFailure | None:
            if not needs_resolution(spec, status, now):
                return None
            if registry is None:
                return RegistryFailure(
                    False,
                    "NoTrackingUri",
                    "set spec.registry.trackingUri (the operator has no MLROLLOUT_TRACKING_URI)",
                )
            return await registry.resolve(spec.model, spec.gate.metric)

        # Analysis is an observation like the others, taken in parallel with them: a fresh result
        # when one is due (or why the spec is unusable); the plan decides what is recorded and said.
        router = router_for(name, spec)

        async def ask_route() -> ProxyObs | None:
            if router.route_name is None:
                return None
            if isinstance(router, NginxRouter):
                return await rt.kube.observe_ingresses(namespace, router.ingress, router.canary_ingress)
            return await rt.kube.observe_route(namespace, router.route_name)

        deployments, pods = children.of(namespace, name)
        answer, tick, route = await asyncio.gather(
            ask_registry(),
            rt.analysis.tick(
                namespace, name, spec.analysis, status, now, shadow=current_shadow(spec, status) is not None
            ),
            ask_route(),
        )
        observed = Observed(
            now=now,
            generation=int(meta.get("generation") or 0),
            deployments=deployments,
            registry=answer,
            analysis=tick.result,
            route=route,
        )
        decided = plan(name, spec, status, observed, router)
        await apply_plan(
            rt.kube,
            current,
            spec,
            decided,
            observed=deployments,
            pods=pods,
            post_event=_post(body),
            registry=registry,
            service=st.service,
        )
        if decided.events:
            log.info(
                "%s/%s: %s", namespace, name, "; ".join(f"{e.reason}: {e.message}" for e in decided.events)
            )
        due = tick.retry_in_seconds if decided.status.canary is not None else None
        if due is not None:
            return due if decided.requeue_after is None else min(decided.requeue_after, due)
        return decided.requeue_after


async def _report_invalid(rt: Runtime, body: kopf.Body, current: Mapping[str, Any], message: str) -> None:
    status = Status.from_dict(current.get("status"))
    now = datetime.now(UTC)
    new = status.with_condition(Condition("Ready", "False", "InvalidSpec", message), now)
    if new.condition("Ready") != status.condition("Ready"):
        kopf.event(body, type="Warning", reason="InvalidSpec", message=message)
        meta = body["metadata"]
        await rt.kube.patch_status(
            meta["namespace"],
            meta["name"],
            {"conditions": [c.to_dict() for c in new.conditions], "message": message},
        )


def _wake(namespace: str, name: str, delay: float | None) -> None:
    if _Process.runtime is None:
        return
    st = _Process.runtime.state(namespace, name)
    st.next_delay = IDLE_SECONDS if delay is None else max(0.0, delay)
    st.wake.set()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def on_change(body: kopf.Body, **kwargs: Any) -> None:
    try:
        delay = await reconcile(body, Children.of_kwargs(kwargs), raise_invalid=True)
    except ApiException as exc:
        if namespace_terminating(exc):
            return  # the namespace and everything in it are being deleted
        raise kopf.TemporaryError(f"Kubernetes API: {exc.status} {exc.reason}", delay=2) from exc
    _wake(body["metadata"]["namespace"], body["metadata"]["name"], delay)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def rollout_loop(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **kwargs: Any,
) -> None:
    """Level-based loop: re-plan when the last plan asked to, when a child changed, or every IDLE_SECONDS."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    st = runtime().state(namespace, name)
    children = Children.of_kwargs(kwargs)
    try:
        while not stopped:
            wake = asyncio.ensure_future(st.wake.wait())
            stop = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait({wake, stop}, timeout=st.next_delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
                stop.cancel()
            st.wake.clear()
            if stopped:
                break
            try:
                delay = await reconcile(body, children, raise_invalid=False)
                st.next_delay = IDLE_SECONDS if delay is None else max(0.5, delay)
            except (ApiException, OSError) as exc:
                if isinstance(exc, ApiException) and namespace_terminating(exc):
                    # Its children are being deleted with the namespace; re-creating them only fails.
                    logger.info("namespace %s is being deleted: not re-creating its children", namespace)
                    st.next_delay = IDLE_SECONDS
                    continue
                logger.warning("reconcile failed, retrying: %s", exc)
                st.next_delay = 2.0
    finally:
        if stopped:
            runtime().objects.pop((namespace, name), None)
            runtime().kube.forget(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_MD: kopf.PRESENT})
async def on_child_deployment(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A serving Deployment changed what the planner reads of it (scaled, relabelled, deleted):
    re-plan its owner now. Its status does not count: Ready pods are counted from the pods.

    A coroutine on purpose: kopf runs a plain function in a thread pool, which cost a thread hop per
    child event and set the asyncio Event from outside its loop, which asyncio does not support."""
    st = _owner_state(body)
    if st is None:
        return
    name = str(body["metadata"].get("name"))
    if type == "DELETED":
        st.children.pop(name, None)
    else:
        seen = deployment_obs(body)
        if st.children.get(name) == seen:
            return  # nothing the plan reads has changed
        st.children[name] = seen
    _wake_for_child(st)


@kopf.on.event("", "v1", "pods", labels={LABEL_MD: kopf.PRESENT})
async def on_child_pod(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A serving pod became Ready or stopped being Ready, or started failing: re-plan its owner now.
    This is what every transition waits on, seen as the kubelet reports it; the Deployment's status
    would say it two controller writes later. Our own label and annotation writes wake nothing."""
    st = _owner_state(body)
    if st is None:
        return
    name = str(body["metadata"].get("name"))
    if type == "DELETED":
        if st.pods.pop(name, QUIET_POD) != QUIET_POD:
            _wake_for_child(st)
        return
    obs = pod_obs(body)
    signals = (obs.ready, obs.crash_looping, obs.unschedulable)
    if st.pods.get(name, QUIET_POD) == signals:
        return
    st.pods[name] = signals
    _wake_for_child(st)


def _owner_state(child: kopf.Body) -> ObjectState | None:
    """The in-process state of the ModelDeployment a serving child belongs to (None: not ours now)."""
    rt = _Process.runtime
    md_name = (child["metadata"].get("labels") or {}).get(LABEL_MD)
    return None if rt is None else rt.objects.get((str(child["metadata"]["namespace"]), str(md_name)))


def _wake_for_child(st: ObjectState) -> None:
    st.next_delay = 0.2  # coalesce bursts of child events into one reconcile
    st.wake.set()


# BatchPrediction handlers register with this module (`kopf run -m mlrollout.operator.handlers`); imported
# last because they use runtime() from here.
import mlrollout.operator.batch.handlers  # noqa: E402, F401

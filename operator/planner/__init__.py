"""The pure rollout planner: (spec, status, observed) -> Plan. No I/O, no clock: `observed.now`.

One call decides everything for one reconcile: which Deployments exist with how many replicas,
the new status (analysis results included), the Events, registry tags and alias moves for decisions
taken *now* (so each decision is announced once), and when to look again. The applier only
carries the plan out. Where each part lives:

| module | decides |
|---|---|
| `gate.py` | offline gate: metric vs threshold and vs stable - maxRegression |
| `steps.py` | the canary's steps, rollback triggers, the analysis policy, the steady state |
| `history.py` | roles: first deploy, canary start/drop, rollback, promotion, undo, kept history |
| `desired.py` | Deployments and replica counts; incoming pods Ready before outgoing scale down |
| `verdicts.py` | which analysis run is recorded, its Events, the AnalysisValid condition |
| `shadow.py` | the shadow step's pods (outside every user-facing Service), deleted when it ends |
| `outcome.py` | the Promoted and Settled conditions `kubectl wait` waits on, from the final status |
| `work.py` | Plan and its parts; the typed scratch state of one pass |
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from mlrollout.operator.model import AliasMove, Observed, RegistryFailure, Resolution, Status
from mlrollout.operator.planner import outcome, routing, shadow, verdicts
from mlrollout.operator.planner.desired import desired
from mlrollout.operator.planner.gate import gate, is_abandoned
from mlrollout.operator.planner.history import (
    deploy_first,
    deployment_name,
    drop_canary,
    rollback,
    same_revision,
    start_canary,
    undo,
)
from mlrollout.operator.planner.steps import steady, walk
from mlrollout.operator.planner.work import (
    TAG_STATUS,
    WAIT_SECONDS,
    DesiredDeployment,
    Event,
    Plan,
    Tag,
    Work,
)
from mlrollout.operator.routers import TrafficRouter
from mlrollout.operator.routers.gateway_api import GatewayAPIRouter
from mlrollout.operator.routers.nginx import NginxRouter
from mlrollout.operator.routers.replicas import ReplicasRouter
from mlrollout.operator.spec import GatewayAPIRoute, NginxRoute, Spec

__all__ = [
    "ALIAS_REFRESH",
    "ALIAS_RETRY_SECONDS",
    "REGISTRY_RETRY_SECONDS",
    "TAG_STATUS",
    "WAIT_SECONDS",
    "AliasMove",
    "DesiredDeployment",
    "Event",
    "Plan",
    "Tag",
    "deployment_name",
    "needs_resolution",
    "plan",
    "router_for",
]

ALIAS_REFRESH = timedelta(seconds=60)  # how often a moving alias is re-resolved
REGISTRY_RETRY_SECONDS = 10.0
ALIAS_RETRY_SECONDS = 30.0  # a pending alias move (registry down at promotion) is retried this often

_REPLICAS: TrafficRouter = ReplicasRouter()


def router_for(md_name: str, spec: Spec) -> TrafficRouter:
    """The router spec.rollout.trafficRouter names."""
    if isinstance(spec.router, GatewayAPIRoute):
        return GatewayAPIRouter(
            spec.router.http_route,
            md_name,
            spec.router.canary_replicas,
            scale_down_delay=spec.router.scale_down_delay_seconds,
        )
    if isinstance(spec.router, NginxRoute):
        return NginxRouter(
            spec.router.ingress,
            md_name,
            spec.router.canary_replicas,
            scale_down_delay=spec.router.scale_down_delay_seconds,
        )
    return _REPLICAS


def needs_resolution(spec: Spec, status: Status, now: datetime) -> bool:
    """Whether the applier must ask the registry before planning."""
    resolved = status.resolved
    if resolved is None or resolved.request != spec.model.request:
        return True
    if spec.model.alias is not None:  # aliases move; follow them, but not on every event
        return resolved.at is None or now - resolved.at >= ALIAS_REFRESH
    return False


def plan(
    md_name: str, spec: Spec, status: Status, observed: Observed, router: TrafficRouter | None = None
) -> Plan:
    router = router if router is not None else router_for(md_name, spec)
    w = Work(
        md=md_name, spec=spec, obs=observed, status=replace(status, observed_generation=observed.generation)
    )
    verdicts.record(w)
    target = _registry(w)
    if target is not None:
        intent = spec.intent if spec.intent and spec.intent.id != status.last_intent_id else None
        if intent:
            w.update(last_intent_id=intent.id)
        if intent and intent.undo_version is not None:
            undo(w, intent.undo_version)
        elif intent and intent.abort:
            if w.status.canary:
                rollback(w, "Aborted", f"rollout of version {w.status.canary.version} aborted by the user")
            else:
                w.event("Normal", "NothingToAbort", "abort requested but no canary is running")
        _reconcile(w, target, router, promote=intent.promote if intent else None)
    outcome.record(w, target)  # Promoted / Settled for `kubectl wait`, from the status just decided
    if w.status.pending_alias is not None:
        w.aliases.append(w.status.pending_alias)
        w.wait(ALIAS_RETRY_SECONDS)
    route_write = routing.route(w, router)
    deployments, deletions = shadow.with_shadow(w, *desired(w, router))
    return Plan(
        status=w.status,
        deployments=deployments,
        delete=deletions,
        events=tuple(w.events),
        tags=tuple(w.tags),
        aliases=tuple(w.aliases),
        requeue_after=w.requeue,
        route=route_write,
    )


def _registry(w: Work) -> Resolution | None:
    """The target version, or None when the registry failed (serving stays exactly as it is)."""
    answer = w.obs.registry
    if isinstance(answer, RegistryFailure):
        was = w.status.condition("RegistryReachable")
        if was is None or was.reason != answer.reason or was.status != "False":
            w.event("Warning", answer.reason, answer.message)
        w.cond("RegistryReachable", False, answer.reason, answer.message)
        if answer.temporary:
            w.wait(REGISTRY_RETRY_SECONDS)
        if w.status.stable is None and w.status.canary is None:
            w.phase("Pending", answer.message)
        return None
    if isinstance(answer, Resolution):
        w.update(resolved=replace(answer, request=w.spec.model.request, at=w.obs.now))
    resolved = w.status.resolved
    w.cond(
        "RegistryReachable",
        True,
        "Resolved",
        f"{w.spec.model.request} -> version {resolved.version if resolved else '?'}",
    )
    if resolved is None or resolved.request != w.spec.model.request:
        # The applier should have asked the registry; ask for another pass rather than guess.
        w.wait(0)
        return None
    if w.spec.model.alias is not None:
        w.wait(ALIAS_REFRESH.total_seconds())
    return resolved


def _reconcile(w: Work, target: Resolution, router: TrafficRouter, promote: str | None) -> None:
    """The top-level state machine: which roles exist, then the canary's walk."""
    st = w.status
    if st.stable is None and st.canary is None:
        if is_abandoned(w, target):
            return
        if gate(w, target, baseline=None):
            deploy_first(w, target)
            steady(w)
        return
    if st.stable is not None and same_revision(w, st.stable, target):
        if st.canary is not None:
            w.event(
                "Normal",
                "CanaryCancelled",
                f"target is back to stable version {target.version}; canary {st.canary.version} removed",
            )
            drop_canary(w)
        w.update(abandoned=None)
        steady(w)
        return
    if is_abandoned(w, target):
        steady(w)
        return
    if st.canary is None or not same_revision(w, st.canary, target):
        baseline = st.stable.gate_value if st.stable else None
        if not gate(w, target, baseline=baseline):
            if st.canary is not None:
                drop_canary(w)
            steady(w)
            return
        start_canary(w, target)
    walk(w, router, promote)

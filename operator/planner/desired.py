"""Desired Deployments from the roles in status, with the one rule that keeps transitions
outage-free: nothing that serves is scaled down or deleted until every incoming Deployment has all
its pods Ready.

Roles first: stable gets N (or its share of the weight), the canary its share, kept history 0.
Then the hold: while any incoming Deployment (positive target, not below what it has) has fewer
Ready pods than its target,
every observed Deployment keeps at least the replicas it has now (scale-ups proceed, scale-downs
wait), and Deployments that are no longer wanted but still have replicas are kept as `draining`
instead of deleted. Once the incoming side is Ready, the next pass scales the outgoing side down
and deletes what is left. When the incoming side never becomes Ready, the outgoing side stays.
This covers every change of which pods serve: promotion, abort, rollback at any weight (100
included), undo, a new target mid-rollout, and each setWeight step (a surge, never a dip).

With a proxy router the outgoing side also waits for the route: while a write to it is in flight,
and for the router's scale-down delay after it is served (status.route.servedAt), since proxies
apply a route some seconds after their Gateway reports it (an aborted canary deleted at once drew
503s from Traefik for the header requests it still sent there)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from mlrollout.operator.model import DeploymentObs, RegistryFailure, Status
from mlrollout.operator.planner.work import WAIT_SECONDS, DesiredDeployment, TrackRole, Work
from mlrollout.operator.routers import TrafficRouter

ROLES: tuple[TrackRole, ...] = ("stable", "canary", "retired")


def targets(status: Status, total: int, router: TrafficRouter) -> list[DesiredDeployment]:
    """Replica targets by role, before the hold."""
    out: list[DesiredDeployment] = []
    if status.canary is not None:
        wplan = router.set_weight(total, status.weight)
        stable_n, canary_n = wplan.stable_replicas, wplan.canary_replicas
    else:
        stable_n, canary_n = total, 0
    if status.stable is not None:
        s = status.stable
        out.append(
            DesiredDeployment(s.deployment, s.version, s.model_uri, stable_n, "stable", s.serving_hash)
        )
    if status.canary is not None:
        c = status.canary
        out.append(
            DesiredDeployment(c.deployment, c.version, c.model_uri, canary_n, "canary", c.serving_hash)
        )
    taken = {d.name for d in out}
    for h in status.history:
        if h.deployment not in taken:
            out.append(DesiredDeployment(h.deployment, h.version, h.model_uri, 0, "retired", h.serving_hash))
            taken.add(h.deployment)
    return out


def incoming_ready(wanted: list[DesiredDeployment], observed: dict[str, DeploymentObs]) -> bool:
    """Every incoming Deployment (one that should serve at least as many pods as it has now) has all
    its target pods Ready. One being scaled *down* is outgoing: its own unready pods (a stable with
    a crashed pod, say) must not block the rollout."""
    for d in wanted:
        obs = observed.get(d.name)
        if d.replicas == 0 or (obs is not None and d.replicas < obs.replicas):
            continue
        if obs is None or obs.replicas < d.replicas or obs.ready_replicas < d.replicas:
            return False
    return True


def _role(track: str) -> TrackRole:
    return next((r for r in ROLES if r == track), "retired")


def desired(w: Work, router: TrafficRouter) -> tuple[tuple[DesiredDeployment, ...], tuple[str, ...]]:
    """(deployments to have, deployments to delete) for this pass."""
    observed = dict(w.obs.deployments)
    wanted = targets(w.status, w.spec.serving.replicas, router)
    names = {d.name for d in wanted}
    gone = sorted(name for name in observed if name not in names)
    if isinstance(w.obs.registry, RegistryFailure):
        gone = []  # after a registry failure nothing is deleted
    wait = WAIT_FOR_INCOMING if not incoming_ready(wanted, observed) else route_wait(w, router)
    if wait is None:
        return tuple(wanted), tuple(gone)
    held: list[DesiredDeployment] = []
    for d in wanted:
        obs = observed.get(d.name)
        held.append(replace(d, replicas=obs.replicas) if obs is not None and obs.replicas > d.replicas else d)
    deletions: list[str] = []
    for name in gone:
        obs = observed[name]
        if obs.replicas > 0:
            held.append(
                DesiredDeployment(name, obs.version, "", obs.replicas, _role(obs.track), draining=True)
            )
        else:
            deletions.append(name)
    if any(h.replicas != d.replicas for h, d in zip(held, wanted, strict=False)) or len(held) > len(wanted):
        w.wait(wait)
    return tuple(held), tuple(deletions)


def route_wait(w: Work, router: TrafficRouter) -> float | None:
    """Seconds until pods that left the route may go (None: now). A route that cannot be served at
    all (missing, not accepted) holds nothing: no proxy sends traffic through it."""
    route = w.status.route
    if router.route_name is None or route is None:
        return None
    if not route.ready:
        return WAIT_SECONDS if route.reason in ("", "RouteUpdating") else None
    if route.served_at is None or router.scale_down_delay <= 0:
        return None
    left = (route.served_at + timedelta(seconds=router.scale_down_delay) - w.obs.now).total_seconds()
    return left if left > 0 else None


WAIT_FOR_INCOMING = 2.0  # seconds; the Deployment watch usually wakes the owner first

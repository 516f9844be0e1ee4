"""The proxy side of a weight: what the router's route object must carry this pass, and whether
the proxy serves it (status.route, the TrafficRouted condition).

The canary gets traffic through the route only while it has a Ready pod: a canary that is still
starting (or crash-looping) has weight 0 and no header rule in the route, so the proxy never sends
requests to a backend with no endpoints. Without a canary (first version, after a promotion,
abort or rollback) the route carries weight 0 and no header rule.

status.route.servedAt says since when the route has served what it carries now: the pods that left
it (an aborted canary, say) are kept until the proxies had `scaleDownDelaySeconds` to apply it
(planner/desired.py), since a Gateway reporting the new generation does not mean every proxy
replica stopped sending to the old backend."""

from __future__ import annotations

from mlrollout.operator.model import RouteStatus
from mlrollout.operator.planner.work import WAIT_SECONDS, Work
from mlrollout.operator.routers import ProxyWrite, TrafficRouter

STEADY_RECHECK_SECONDS = 30.0  # a route that is not served while no canary runs: look again this often


def route(w: Work, router: TrafficRouter) -> ProxyWrite | None:
    name = router.route_name
    kind = router.route_kind
    if name is None:
        if w.status.route is not None:
            w.update(route=None)
        return None
    canary = w.status.canary
    if canary is None and w.status.header_route:
        w.update(header_route=())
        w.event("Normal", "HeaderRouteCleared", f"{kind} {name}: header rule removed (no canary)")
    c_obs = w.obs.deployments.get(canary.deployment) if canary is not None else None
    serving = c_obs is not None and c_obs.ready_replicas > 0
    weight = w.status.weight if serving else 0
    headers = w.status.header_route if serving else ()
    write = router.route_write(w.obs.route, weight, headers)
    verdict = router.route_verdict(w.obs.route, weight, headers)
    served = verdict.ok and write is None
    if write is not None and verdict.weight != weight:
        w.event("Normal", "RouteWeight", f"{kind} {name}: canary weight {verdict.weight} -> {weight}")
    was = w.status.route
    since = None
    if served:  # kept while the route goes on serving the same weight
        prior = was.served_at if was is not None and was.ready and was.weight == verdict.weight else None
        since = prior or w.obs.now.replace(microsecond=0)
    shown = RouteStatus(kind, name, verdict.weight, served, verdict.reason, verdict.message, since)
    if w.status.route != shown:
        w.update(route=shown)
    if served:
        w.cond("TrafficRouted", True, "RouteServed", f"{kind} {name} serves {weight}% on the canary")
    else:
        reason = verdict.reason or "RouteUpdating"
        message = verdict.message or f"{kind} {name}: writing weight {weight}"
        before = w.status.condition("TrafficRouted")
        # Announced once per reason; a route catching up with a write is no news.
        if reason != "RouteUpdating" and (before is None or before.reason != reason):
            w.event("Warning", reason, message)
        w.cond("TrafficRouted", False, reason, message)
        w.wait(WAIT_SECONDS if canary is not None else STEADY_RECHECK_SECONDS)
    return write

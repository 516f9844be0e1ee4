"""The `gatewayAPI` router: exact weights through a Gateway API HTTPRoute the user owns.

Traffic share is set by the route's backendRef weights, not by pod counts, so a 1% step works with
one canary pod. Two Services per ModelDeployment select the pods of each track (`<md>-stable`,
`<md>-canary`, made by children.py). The user writes the HTTPRoute (parentRefs, hostnames, matches,
filters, timeouts) with a rule whose backendRefs name `<md>-stable`; the operator owns exactly:

- in every rule that references `<md>-stable`, the weights of the `<md>-stable` and `<md>-canary`
  refs (the canary ref is a copy of the user's stable ref: same port, filters, namespace);
- its own header rules, named `mlrollout-header-<i>`, one per managed rule: the same matches plus
  the header conditions of a setHeaderRoute step, all traffic to the canary. Gateway API picks the
  most specific match, so they win over the weighted rule whatever its weight.

Everything else in the route is left exactly as the user wrote it. `desired_rules` is the pure
rewrite; `route_verdict` reads a route back (weights as written, and the controller's Accepted /
ResolvedRefs conditions for this generation) so a step counts only once the proxy took it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlrollout.operator.model import DeploymentObs, HeaderMatch, ProxyObs, RouteObs
from mlrollout.operator.routers import ProxyWrite, RouteVerdict, RouteWrite, WeightPlan

HEADER_RULE_PREFIX = "mlrollout-header-"


def track_service(md_name: str, track: str) -> str:
    return f"{md_name}-{track}"


def canary_replicas(total: int, weight: int, fixed: int | None) -> int:
    """Canary pods while a canary exists: `fixed` (spec canaryReplicas) when set, else its share of
    `total` rounded up, and at least one even at weight 0 (the proxy, not the pod count, decides
    its traffic: a header rule at weight 0 needs a pod to reach). Stable keeps all `total` pods."""
    if fixed is not None:
        return fixed
    return max(1, -(-total * weight // 100))


def _is_ref(ref: Mapping[str, Any], service: str) -> bool:
    return (
        ref.get("name") == service
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") in ("", "core")
    )


def managed_rules(rules: Sequence[Mapping[str, Any]], stable: str) -> list[int]:
    """Indexes of the user's rules the operator weights: those with a backendRef to `stable`."""
    return [
        i
        for i, rule in enumerate(rules)
        if not str(rule.get("name", "")).startswith(HEADER_RULE_PREFIX)
        and any(_is_ref(ref, stable) for ref in rule.get("backendRefs") or [])
    ]


def desired_rules(
    rules: Sequence[Mapping[str, Any]],
    stable: str,
    canary: str,
    weight: int,
    headers: Sequence[HeaderMatch] = (),
) -> list[dict[str, Any]]:
    """The route's rules with `weight` percent on `canary` in every managed rule, and header rules
    for `headers` (none when empty). Idempotent: desired_rules(desired_rules(r)) == desired_rules(r)."""
    out: list[dict[str, Any]] = []
    header_rules: list[dict[str, Any]] = []
    for rule in rules:
        if str(rule.get("name", "")).startswith(HEADER_RULE_PREFIX):
            continue  # ours: rebuilt below from the step
        refs = list(rule.get("backendRefs") or [])
        template = next((r for r in refs if _is_ref(r, stable)), None)
        if template is None:
            out.append(copy.deepcopy(dict(rule)))
            continue
        new = copy.deepcopy(dict(rule))
        canary_ref = {**copy.deepcopy(dict(template)), "name": canary}
        kept = [copy.deepcopy(dict(r)) for r in refs if not _is_ref(r, stable) and not _is_ref(r, canary)]
        new["backendRefs"] = [
            {**copy.deepcopy(dict(template)), "weight": 100 - weight},
            {**canary_ref, "weight": weight},
            *kept,
        ]
        out.append(new)
        if headers:
            matches = rule.get("matches") or [{}]
            extra = [h.to_dict() for h in headers]
            header_rule: dict[str, Any] = {
                "name": f"{HEADER_RULE_PREFIX}{len(header_rules)}",
                "matches": [
                    {
                        **copy.deepcopy(dict(m)),
                        "headers": [*copy.deepcopy(list(m.get("headers") or [])), *extra],
                    }
                    for m in matches
                ],
                "backendRefs": [{**canary_ref, "weight": 1}],
            }
            for key in ("filters", "timeouts"):
                if key in rule:
                    header_rule[key] = copy.deepcopy(rule[key])
            header_rules.append(header_rule)
    return out + header_rules


def applied_weight(rules: Sequence[Mapping[str, Any]], stable: str, canary: str) -> int | None:
    """The canary's percent as the route says (first managed rule), or None without a managed rule."""
    for rule in rules:
        if str(rule.get("name", "")).startswith(HEADER_RULE_PREFIX):
            continue
        refs = rule.get("backendRefs") or []
        s = next((r for r in refs if _is_ref(r, stable)), None)
        if s is None:
            continue
        c = next((r for r in refs if _is_ref(r, canary)), None)
        s_w = int(s.get("weight", 1))
        c_w = int(c.get("weight", 1)) if c is not None else 0
        return 0 if s_w + c_w == 0 else round(c_w * 100 / (s_w + c_w))
    return None


def route_verdict(
    route: RouteObs | None, stable: str, canary: str, weight: int, headers: Sequence[HeaderMatch]
) -> RouteVerdict:
    if route is None or not route.exists:
        name = route.name if route is not None else "the HTTPRoute"
        return RouteVerdict(False, "RouteNotFound", f"HTTPRoute {name} does not exist in this namespace")
    if not managed_rules(route.rules, stable):
        return RouteVerdict(
            False,
            "RouteHasNoStableBackend",
            f"HTTPRoute {route.name} has no rule with a backendRef to Service {stable}",
        )
    now = applied_weight(route.rules, stable, canary)
    if list(route.rules) != desired_rules(route.rules, stable, canary, weight, headers):
        return RouteVerdict(
            False, "RouteUpdating", f"HTTPRoute {route.name} does not carry weight {weight} yet", now
        )
    if not route.parents:
        return RouteVerdict(
            False,
            "RouteNotAccepted",
            f"HTTPRoute {route.name} is not accepted by any Gateway (status.parents is empty: "
            "check its parentRefs and that a Gateway controller runs)",
            now,
        )
    for parent in route.parents:
        if parent.observed_generation < route.generation:
            return RouteVerdict(
                False,
                "RouteUpdating",
                f"Gateway {parent.gateway} has not processed generation {route.generation} yet",
                now,
            )
        if not parent.accepted or not parent.resolved_refs:
            return RouteVerdict(
                False,
                parent.reason or "RouteNotAccepted",
                f"Gateway {parent.gateway} does not serve HTTPRoute {route.name}: {parent.message}",
                now,
            )
    return RouteVerdict(True, weight=now)


@dataclass(frozen=True)
class GatewayAPIRouter:
    """Weights through HTTPRoute `http_route`; pod counts only need to carry the load."""

    http_route: str
    md_name: str
    fixed_canary_replicas: int | None = None
    scale_down_delay: float = 30.0  # seconds pods that left the route keep running (proxies lag)
    name: str = "gatewayAPI"
    route_kind: str = "HTTPRoute"
    supports_headers: bool = True

    @property
    def route_name(self) -> str | None:
        return self.http_route

    @property
    def stable_service(self) -> str:
        return track_service(self.md_name, "stable")

    @property
    def canary_service(self) -> str:
        return track_service(self.md_name, "canary")

    def set_weight(self, total_replicas: int, weight: int) -> WeightPlan:
        canary = canary_replicas(total_replicas, weight, self.fixed_canary_replicas)
        # Stable stays full size at every weight, 100 included: a rollback from any step then
        # needs no scale-up before traffic can go back.
        stable = total_replicas
        return WeightPlan(weight=weight, stable_replicas=stable, canary_replicas=canary)

    def verify_weight(
        self, plan: WeightPlan, stable: DeploymentObs | None, canary: DeploymentObs | None
    ) -> bool:
        """Pods only; the route itself is checked by route_verdict with the observed HTTPRoute."""
        return canary is not None and canary.ready_replicas >= plan.canary_replicas

    def route_write(
        self, route: ProxyObs | None, weight: int, headers: tuple[HeaderMatch, ...]
    ) -> ProxyWrite | None:
        route = route if isinstance(route, RouteObs) else None
        if route is None or not route.exists or not managed_rules(route.rules, self.stable_service):
            return None  # nothing to write into; route_verdict says why
        rules = desired_rules(route.rules, self.stable_service, self.canary_service, weight, headers)
        if rules == list(route.rules):
            return None
        return RouteWrite("HTTPRoute", route.name, route.resource_version, tuple(rules))

    def route_verdict(
        self, route: ProxyObs | None, weight: int, headers: tuple[HeaderMatch, ...]
    ) -> RouteVerdict:
        route = route if isinstance(route, RouteObs) else None
        return route_verdict(route, self.stable_service, self.canary_service, weight, headers)

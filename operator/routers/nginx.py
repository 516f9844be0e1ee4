"""The `nginx` router: exact weights and a header rule through an NGINX-style canary Ingress.

The user owns the primary Ingress (hosts, paths, TLS, class, other annotations); its paths for this
model name Service `<md>-stable` as their backend. The operator owns one object only, the canary
Ingress `<md>-canary` (owner reference to the ModelDeployment, so it goes with it):

- the primary's rules restricted to the paths whose backend is `<md>-stable`, same host, path and
  pathType (a controller pairs a canary with the primary by exactly these), pointed at `<md>-canary`
  (same port); the primary's `ingressClassName` and `kubernetes.io/ingress.class`, so the same
  controller takes it;
- the canary annotations: `nginx.ingress.kubernetes.io/canary: "true"`, `canary-weight` (of
  `canary-weight-total: "100"`), and for a setHeaderRoute step `canary-by-header` with
  `canary-by-header-value` (Exact) or `canary-by-header-pattern` (RegularExpression). The NGINX
  annotation model has one header per canary, so a step sets at most one (spec.py refuses more).

Without a canary, at weight 0 with no header rule (after a promotion, an abort, a rollback), the
canary Ingress is deleted: nothing is left behind. Implemented by ingress-nginx and by Traefik's
NGINX-annotation provider (`--providers.kubernetesIngressNGINX`, Traefik >= 3.7).

Verification (`route_verdict`), read back from the API server, never assumed from a write:
- the primary exists, has a path to `<md>-stable`, and a controller took it: its
  status.loadBalancer lists an address (ingress-nginx publishes it by default; Traefik with
  `publishService` or `publishStatusAddress`). An Ingress no controller serves holds the rollout
  (reason IngressNotServed) and nothing is written: traffic never shifts blind;
- the canary Ingress carries exactly the wanted annotations and rules, and the controller took it
  too (an address in its status: Traefik sets it only once the canary matched a primary path).
Ingress has no observedGeneration, so a weight change on an Ingress already taken counts as served
once read back; the proxies' lag after that is what scaleDownDelaySeconds covers.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlrollout.operator.model import DeploymentObs, HeaderMatch, IngressObs, IngressPairObs, ProxyObs
from mlrollout.operator.routers import IngressWrite, ProxyWrite, RouteVerdict, WeightPlan
from mlrollout.operator.routers.gateway_api import canary_replicas, track_service

PREFIX = "nginx.ingress.kubernetes.io/"
CANARY = PREFIX + "canary"
WEIGHT = PREFIX + "canary-weight"
WEIGHT_TOTAL = PREFIX + "canary-weight-total"
BY_HEADER = PREFIX + "canary-by-header"
HEADER_VALUE = PREFIX + "canary-by-header-value"
HEADER_PATTERN = PREFIX + "canary-by-header-pattern"
BY_COOKIE = PREFIX + "canary-by-cookie"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
# Every annotation whose value on the canary Ingress the operator decides (absent = must be absent).
MANAGED = (CANARY, WEIGHT, WEIGHT_TOTAL, BY_HEADER, HEADER_VALUE, HEADER_PATTERN, BY_COOKIE, CLASS_ANNOTATION)
OWNER_KIND = "ModelDeployment"


def canary_ingress_name(md_name: str) -> str:
    return f"{md_name}-canary"


def _backend_service(path: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((path.get("backend") or {}).get("service")) or {}


def canary_rules(rules: Sequence[Mapping[str, Any]], stable: str, canary: str) -> list[dict[str, Any]]:
    """The primary's rules with only the paths whose backend is Service `stable`, pointed at `canary`
    (host, path, pathType and port unchanged). Empty: the primary routes nothing to this model."""
    out: list[dict[str, Any]] = []
    for rule in rules:
        paths: list[dict[str, Any]] = []
        for path in (rule.get("http") or {}).get("paths") or []:
            service = _backend_service(path)
            if service.get("name") != stable:
                continue
            new = copy.deepcopy(dict(path))
            new["backend"] = {"service": {**copy.deepcopy(dict(service)), "name": canary}}
            paths.append(new)
        if paths:
            new_rule: dict[str, Any] = {"http": {"paths": paths}}
            if rule.get("host"):
                new_rule["host"] = rule["host"]
            out.append(new_rule)
    return out


def canary_annotations(primary: IngressObs, weight: int, headers: Sequence[HeaderMatch]) -> dict[str, str]:
    out = {CANARY: "true", WEIGHT: str(weight), WEIGHT_TOTAL: "100"}
    if headers:
        header = headers[0]
        out[BY_HEADER] = header.name
        out[HEADER_PATTERN if header.type == "RegularExpression" else HEADER_VALUE] = header.value
    if CLASS_ANNOTATION in primary.annotations:
        out[CLASS_ANNOTATION] = primary.annotations[CLASS_ANNOTATION]
    return out


def desired_canary(
    primary: IngressObs, md_name: str, weight: int, headers: Sequence[HeaderMatch]
) -> dict[str, Any] | None:
    """The canary Ingress for `weight` and `headers` (None: there must be none)."""
    if weight <= 0 and not headers:
        return None
    stable, canary = track_service(md_name, "stable"), track_service(md_name, "canary")
    spec: dict[str, Any] = {"rules": canary_rules(primary.rules, stable, canary)}
    if primary.ingress_class is not None:
        spec["ingressClassName"] = primary.ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": canary_ingress_name(md_name),
            "annotations": canary_annotations(primary, weight, headers),
        },
        "spec": spec,
    }


def carries(obs: IngressObs, manifest: Mapping[str, Any]) -> bool:
    """Whether the canary Ingress read back says what `manifest` says (the managed fields only)."""
    want_ann: Mapping[str, str] = manifest["metadata"]["annotations"]
    have_ann = {k: v for k, v in obs.annotations.items() if k in MANAGED}
    spec: Mapping[str, Any] = manifest["spec"]
    return bool(
        have_ann == want_ann
        and list(obs.rules) == spec["rules"]
        and obs.ingress_class == spec.get("ingressClassName")
    )


def applied_weight(obs: IngressObs) -> int | None:
    """The canary's percent the canary Ingress carries (0 when there is none); None if unreadable."""
    if not obs.exists or obs.annotations.get(CANARY) != "true":
        return 0
    try:
        weight = int(obs.annotations.get(WEIGHT, "0"))
        total = max(int(obs.annotations.get(WEIGHT_TOTAL, "100")), 100)
    except ValueError:
        return None
    return round(min(max(weight, 0), total) * 100 / total)


def ingress_obs(obj: Mapping[str, Any]) -> IngressObs:
    """An Ingress (as the API server returns it) as the router sees it."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    lb = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    owner = next(
        (
            str(ref.get("name"))
            for ref in meta.get("ownerReferences") or []
            if ref.get("kind") == OWNER_KIND and str(ref.get("apiVersion", "")).startswith("mlrollout.io/")
        ),
        None,
    )
    klass = spec.get("ingressClassName")
    return IngressObs(
        name=str(meta.get("name", "")),
        exists=True,
        resource_version=str(meta.get("resourceVersion") or ""),
        ingress_class=str(klass) if klass is not None else None,
        annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
        rules=tuple(spec.get("rules") or ()),
        addresses=tuple(
            str(a.get("ip") or a.get("hostname")) for a in lb if a.get("ip") or a.get("hostname")
        ),
        owner=owner,
    )


def _primary_problem(pair: IngressPairObs | None, primary_name: str, stable: str) -> RouteVerdict | None:
    """Why the primary Ingress cannot carry a canary (None: it can)."""
    if pair is None or not pair.primary.exists:
        return RouteVerdict(
            False, "IngressNotFound", f"Ingress {primary_name} does not exist in this namespace"
        )
    primary = pair.primary
    if not canary_rules(primary.rules, stable, stable):
        return RouteVerdict(
            False,
            "IngressHasNoStableBackend",
            f"Ingress {primary.name} has no path whose backend is Service {stable}",
        )
    if not primary.addresses:
        klass = primary.ingress_class or primary.annotations.get(CLASS_ANNOTATION) or "(none)"
        return RouteVerdict(
            False,
            "IngressNotServed",
            f"Ingress {primary.name} is not served by any Ingress controller (status.loadBalancer is "
            f"empty; class {klass}): check that its class names a controller implementing the NGINX "
            "canary annotations and that the controller publishes Ingress status",
        )
    return None


def _conflict(pair: IngressPairObs | None, md_name: str) -> RouteVerdict | None:
    if pair is None or not pair.canary.exists or pair.canary.owner == md_name:
        return None
    return RouteVerdict(
        False,
        "CanaryIngressConflict",
        f"Ingress {pair.canary.name} exists and is not owned by ModelDeployment {md_name}: the nginx "
        "router needs that name for its canary Ingress (rename or delete it)",
    )


def route_verdict(
    pair: IngressPairObs | None, primary_name: str, md_name: str, weight: int, headers: Sequence[HeaderMatch]
) -> RouteVerdict:
    stable = track_service(md_name, "stable")
    conflict = _conflict(pair, md_name)
    if conflict is not None:
        return conflict
    problem = _primary_problem(pair, primary_name, stable)
    if problem is not None:
        return problem
    assert pair is not None
    canary = pair.canary
    now = applied_weight(canary)
    want = desired_canary(pair.primary, md_name, weight, headers)
    if want is None:
        if canary.exists:
            return RouteVerdict(False, "RouteUpdating", f"canary Ingress {canary.name} is being removed", now)
        return RouteVerdict(True, weight=0)
    if not canary.exists or not carries(canary, want):
        return RouteVerdict(
            False, "RouteUpdating", f"canary Ingress {canary.name} does not carry weight {weight} yet", now
        )
    if not canary.addresses:
        return RouteVerdict(
            False,
            "RouteUpdating",
            f"the Ingress controller has not taken canary Ingress {canary.name} yet (no address in its "
            f"status.loadBalancer; it must match host, path and pathType of Ingress {pair.primary.name})",
            now,
        )
    return RouteVerdict(True, weight=now)


@dataclass(frozen=True)
class NginxRouter:
    """Weights and a header rule through the canary Ingress beside the user's Ingress `ingress`."""

    ingress: str
    md_name: str
    fixed_canary_replicas: int | None = None
    scale_down_delay: float = 30.0  # seconds pods that left the route keep running (proxies lag)
    name: str = "nginx"
    route_kind: str = "Ingress"
    supports_headers: bool = True

    @property
    def route_name(self) -> str | None:
        return self.ingress

    @property
    def canary_ingress(self) -> str:
        return canary_ingress_name(self.md_name)

    def set_weight(self, total_replicas: int, weight: int) -> WeightPlan:
        canary = canary_replicas(total_replicas, weight, self.fixed_canary_replicas)
        # Stable stays full size at every weight: a rollback then needs no scale-up first.
        return WeightPlan(weight=weight, stable_replicas=total_replicas, canary_replicas=canary)

    def verify_weight(
        self, plan: WeightPlan, stable: DeploymentObs | None, canary: DeploymentObs | None
    ) -> bool:
        """Pods only; the Ingresses are checked by route_verdict."""
        return canary is not None and canary.ready_replicas >= plan.canary_replicas

    def route_write(
        self, route: ProxyObs | None, weight: int, headers: tuple[HeaderMatch, ...]
    ) -> ProxyWrite | None:
        pair = route if isinstance(route, IngressPairObs) else None
        if pair is None or _conflict(pair, self.md_name) is not None:
            return None  # never touch an Ingress that is not ours; route_verdict says why
        want = None
        if _primary_problem(pair, self.ingress, track_service(self.md_name, "stable")) is None:
            want = desired_canary(pair.primary, self.md_name, weight, headers)
        elif weight > 0 or headers:
            return None  # nothing shifts towards a canary through a primary no controller serves
        if want is None:
            return IngressWrite(self.canary_ingress, None) if pair.canary.exists else None
        if pair.canary.exists and carries(pair.canary, want):
            return None
        return IngressWrite(self.canary_ingress, want)

    def route_verdict(
        self, route: ProxyObs | None, weight: int, headers: tuple[HeaderMatch, ...]
    ) -> RouteVerdict:
        pair = route if isinstance(route, IngressPairObs) else None
        return route_verdict(pair, self.ingress, self.md_name, weight, headers)

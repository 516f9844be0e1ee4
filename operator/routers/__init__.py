"""Traffic routers: how a canary weight becomes real traffic.

Every provider implements `TrafficRouter`. Routers are pure: they say which replica counts and which
extra objects realise a weight, and whether the observed cluster realises it yet. The planner waits on
`verify_weight` before a setWeight step counts as done; `planner/desired.py` turns the counts into
Deployments and holds every scale-down until the incoming pods are Ready (a surge, never a dip), and
the applier makes the calls.

Routers that steer a proxy also own a proxy object: part of the HTTPRoute the user wrote
(`gatewayAPI`), or a canary Ingress of their own beside the user's Ingress (`nginx`). `route_write`
says how the observed objects must change for a weight and header rule (None: they already say so),
and `route_verdict` whether the proxy serves it, read back from the objects and their controller's
status. A step that moves traffic completes only when both the pods and the route are right.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlrollout.operator.model import DeploymentObs, HeaderMatch, ProxyObs


@dataclass(frozen=True)
class WeightPlan:
    """Replica counts per track and any router objects (HTTPRoute, Ingress...) that realise a weight."""

    weight: int
    stable_replicas: int
    canary_replicas: int
    objects: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class RouteWrite:
    """Replace spec.rules of route `name`, if it is still at `resource_version` (else: re-plan)."""

    kind: str
    name: str
    resource_version: str
    rules: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class IngressWrite:
    """Server-side apply the router's own canary Ingress `name` (`manifest`, without owner references:
    the applier adds the ModelDeployment's), or delete it (`manifest` None)."""

    name: str
    manifest: Mapping[str, Any] | None

    kind: str = "Ingress"


ProxyWrite = RouteWrite | IngressWrite


@dataclass(frozen=True)
class RouteVerdict:
    """Whether the route serves what the plan wants; `reason`/`message` say why not."""

    ok: bool
    reason: str = ""
    message: str = ""
    weight: int | None = None  # the canary's percent the route carries now, read back


class TrafficRouter(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def route_name(self) -> str | None:
        """The proxy object the router manages (None: no proxy)."""
        ...

    @property
    def route_kind(self) -> str:
        """The kind of the proxy object named by route_name (HTTPRoute, Ingress; "" without one)."""
        ...

    @property
    def supports_headers(self) -> bool: ...

    @property
    def scale_down_delay(self) -> float:
        """Seconds the pods that left the route keep running once it is served (0: no proxy)."""
        ...

    def route_write(
        self, route: ProxyObs | None, weight: int, headers: tuple[HeaderMatch, ...]
    ) -> ProxyWrite | None:
        """How the observed route must change to carry `weight` and `headers`; None if it does."""
        ...

    def route_verdict(
        self, route: ProxyObs | None, weight: int, headers: tuple[HeaderMatch, ...]
    ) -> RouteVerdict:
        """Whether the proxy serves `weight` and `headers` now."""
        ...

    def set_weight(self, total_replicas: int, weight: int) -> WeightPlan:
        """The desired state for `weight` percent of traffic on the canary."""
        ...

    def verify_weight(
        self, plan: WeightPlan, stable: DeploymentObs | None, canary: DeploymentObs | None
    ) -> bool:
        """True once the cluster serves `plan` (the step may then complete)."""
        ...

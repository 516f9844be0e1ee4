"""The `replicas` router: no mesh. One Service selects the pods of both tracks, so the share of
traffic a track gets is its share of Ready pods.

Rounding (documented, table-tested): with N = spec.serving.replicas and weight w,
  canary = ceil(N * w / 100)      so any w > 0 gets at least one canary pod,
  stable = N - canary             so the total stays N,
except that for 0 < w < 100 the stable track keeps at least one pod: if canary would be N, it
becomes N - 1; and if N == 1 both tracks get one pod (a temporary surge to 2, effective 50%).
w = 0 -> (N, 0); w = 100 -> (0, N). The effective weight is canary / (stable + canary).

These are targets. While a weight changes, the planner keeps the outgoing side at its current size
until the incoming side is Ready (planner/desired.py), so the effective weight passes through a
surge; `verify_weight` holds the step until the counts are exactly the targets and all Ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlrollout.operator.model import DeploymentObs, HeaderMatch, ProxyObs
from mlrollout.operator.routers import ProxyWrite, RouteVerdict, WeightPlan


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replica counts for `weight` percent on the canary."""
    if total < 1:
        raise ValueError(f"total replicas must be >= 1, got {total}")
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be in [0, 100], got {weight}")
    if weight == 0:
        return total, 0
    if weight == 100:
        return 0, total
    if total == 1:
        return 1, 1
    canary = min(-(-total * weight // 100), total - 1)  # ceil without floats
    return total - canary, canary


def effective_weight(stable: int, canary: int) -> int:
    """The traffic share (percent, rounded down) the canary gets from replica counts."""
    return 0 if stable + canary == 0 else canary * 100 // (stable + canary)


def _serves(obs: DeploymentObs | None, replicas: int) -> bool:
    if replicas == 0:
        return obs is None or obs.replicas == 0
    return obs is not None and obs.replicas == replicas and obs.ready_replicas >= replicas


@dataclass(frozen=True)
class ReplicasRouter:
    name: str = "replicas"
    route_name: str | None = None
    route_kind: str = ""
    supports_headers: bool = False
    scale_down_delay: float = 0.0  # no proxy: a pod leaves the Service when it stops being Ready

    def route_write(
        self, route: ProxyObs | None, weight: int, headers: tuple[HeaderMatch, ...]
    ) -> ProxyWrite | None:
        return None  # no proxy object: the pods are the route

    def route_verdict(
        self, route: ProxyObs | None, weight: int, headers: tuple[HeaderMatch, ...]
    ) -> RouteVerdict:
        return RouteVerdict(True)

    def set_weight(self, total_replicas: int, weight: int) -> WeightPlan:
        stable, canary = split_replicas(total_replicas, weight)
        return WeightPlan(weight=weight, stable_replicas=stable, canary_replicas=canary)

    def verify_weight(
        self, plan: WeightPlan, stable: DeploymentObs | None, canary: DeploymentObs | None
    ) -> bool:
        # Canary must be fully Ready; the stable side must be scaled to its share (extra stable
        # pods would dilute the canary's traffic share).
        stable_ok = plan.stable_replicas == 0 or (
            stable is not None and stable.replicas == plan.stable_replicas
        )
        return _serves(canary, plan.canary_replicas) and stable_ok

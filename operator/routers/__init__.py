"""Traffic routers: how a canary weight becomes real traffic.

Every provider implements `TrafficRouter`. Routers are pure: they say which replica counts and which
extra objects realise a weight, and whether the observed cluster realises it yet. The planner waits on
`verify_weight` before a setWeight step counts as done; `planner/desired.py` turns the counts into
Deployments and holds every scale-down until the incoming pods are Ready (a surge, never a dip), and
the applier makes the calls. Only `replicas` exists today; the CRD refuses any other router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlrollout.operator.model import DeploymentObs


@dataclass(frozen=True)
class WeightPlan:
    """Replica counts per track and any router objects (HTTPRoute, Ingress...) that realise a weight."""

    weight: int
    stable_replicas: int
    canary_replicas: int
    objects: tuple[Mapping[str, Any], ...] = ()


class TrafficRouter(Protocol):
    @property
    def name(self) -> str: ...

    def set_weight(self, total_replicas: int, weight: int) -> WeightPlan:
        """The desired state for `weight` percent of traffic on the canary."""
        ...

    def verify_weight(
        self, plan: WeightPlan, stable: DeploymentObs | None, canary: DeploymentObs | None
    ) -> bool:
        """True once the cluster serves `plan` (the step may then complete)."""
        ...

"""The Promoted / Settled conditions `kubectl wait` waits on: a table over outcome.judge, then whole
rollouts through plan() (pods Ready as soon as asked unless a version is broken)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mlrollout.operator.model import (
    Abandoned,
    AnalysisResult,
    DeploymentObs,
    Observed,
    RegistryFailure,
    Resolution,
    Status,
    Track,
)
from mlrollout.operator.planner import needs_resolution, plan
from mlrollout.operator.planner.outcome import Outcome, judge
from mlrollout.operator.spec import Spec, parse_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GATE = {"1": 0.90, "2": 0.92, "3": 0.40}  # version 3 fails the 0.85 gate


def make_spec(version: str, steps: list[dict[str, Any]] | None = None, **extra: Any) -> Spec:
    return parse_spec(
        {
            "model": {"name": "churn", "version": version},
            "serving": {"image": "serve:1", "replicas": 2},
            "gate": {"threshold": 0.85},
            "rollout": {"steps": steps or [{"setWeight": 50}, {"pause": {}}], "progressDeadlineSeconds": 30},
            **extra,
        }
    )


def resolution(version: str, request: str) -> Resolution:
    return Resolution(version, f"file:///m/{version}", f"run{version}", GATE.get(version), request=request)


SPEC = make_spec("2")
HASH = SPEC.serving.template_hash
REQ = SPEC.model.request
V1 = Track("1", "file:///m/1", f"churn-v1-{HASH}", serving_hash=HASH)
V2 = Track("2", "file:///m/2", f"churn-v2-{HASH}", serving_hash=HASH)
V2_OTHER_TEMPLATE = replace(V2, serving_hash="0ther")
TARGET = resolution("2", REQ)
DOWN = RegistryFailure(True, "RegistryUnreachable", "MLflow: connection refused")
MISSING = RegistryFailure(False, "ModelVersionNotFound", "no version 2 of churn")


@pytest.mark.parametrize(
    ("status", "target", "failure", "want"),
    [
        # Nothing known about the target yet.
        (Status(), None, None, ("Unknown", "Resolving")),
        (Status(phase="Promoted", stable=V1), None, DOWN, ("Unknown", "RegistryUnreachable")),
        (Status(phase="Pending"), None, MISSING, ("False", "ModelVersionNotFound")),
        # An answer about an earlier request is not about this spec.
        (Status(phase="Promoted", stable=V1, resolved=resolution("1", "version 1")), None, None,
         ("Unknown", "Resolving")),
        # The last answer for this very request counts when the registry is down (alias refresh).
        (Status(phase="Promoted", stable=V2, resolved=TARGET), None, DOWN, ("True", "RolloutComplete")),
        # In flight.
        (Status(phase="Progressing", stable=V1, canary=V2), TARGET, None, ("Unknown", "Progressing")),
        (Status(phase="Paused", stable=V1, canary=V2, pause_reason="PauseStep"), TARGET, None,
         ("Unknown", "Paused")),
        (Status(phase="Progressing", stable=V2), TARGET, None, ("Unknown", "Progressing")),
        # Done, one way or the other.
        (Status(phase="Promoted", stable=V2), TARGET, None, ("True", "RolloutComplete")),
        (Status(phase="RolledBack", stable=V1, abandoned=Abandoned("2", "AnalysisFailed", "errors")), TARGET,
         None, ("False", "RolledBack")),
        (Status(phase="Rejected", stable=V1, abandoned=Abandoned("2", "GateFailed", "f1 0.4 < 0.85")),
         TARGET, None, ("False", "Rejected")),
        (Status(phase="Degraded", stable=V2), TARGET, None, ("False", "Degraded")),
        # A stale phase about another version or another pod template is not this rollout's end.
        (Status(phase="RolledBack", stable=V1, abandoned=Abandoned("9", "AnalysisFailed", "x")), TARGET,
         None, ("Unknown", "RolledBack")),
        (Status(phase="Promoted", stable=V1), TARGET, None, ("Unknown", "Promoted")),
        (Status(phase="Promoted", stable=V2_OTHER_TEMPLATE), TARGET, None, ("Unknown", "Promoted")),
    ],
)  # fmt: skip
def test_outcome_table(
    status: Status, target: Resolution | None, failure: RegistryFailure | None, want: tuple[str, str]
) -> None:
    out = judge(SPEC, status, target, failure)
    assert (out.promoted, out.reason) == want
    assert out.settled == (want[0] != "Unknown")


def test_settled_follows_promoted() -> None:
    assert not Outcome("Unknown", "Progressing", "").settled
    assert Outcome("True", "RolloutComplete", "").settled
    assert Outcome("False", "RolledBack", "").settled


@dataclass
class Cluster:
    """Just enough cluster for whole rollouts: every Deployment gets its pods Ready when asked,
    except a broken version's; the registry answers from GATE."""

    spec: Spec
    status: Status = field(default_factory=Status)
    now: datetime = T0
    generation: int = 1
    deployments: dict[str, DeploymentObs] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    registry_down: bool = False
    analysis: AnalysisResult | None = None

    def tick(self) -> dict[str, tuple[str, str]]:
        registry: Resolution | RegistryFailure | None = None
        if needs_resolution(self.spec, self.status, self.now):
            version = self.spec.model.version or ""
            if self.registry_down:
                registry = DOWN
            elif version in GATE:
                registry = resolution(version, self.spec.model.request)
            else:
                registry = MISSING
        obs = Observed(self.now, self.generation, dict(self.deployments), registry, self.analysis)
        self.analysis = None
        p = plan("churn", self.spec, self.status, obs)
        self.status = p.status
        for name in p.delete:
            self.deployments.pop(name, None)
        for d in p.deployments:
            ready = 0 if d.version in self.broken else d.replicas
            self.deployments[d.name] = DeploymentObs(d.name, d.version, d.replicas, ready, track=d.track)
        self.now += timedelta(seconds=1)
        return self.conditions()

    def conditions(self) -> dict[str, tuple[str, str]]:
        return {
            t: (c.status, c.reason)
            for t in ("Promoted", "Settled")
            if (c := self.status.condition(t)) is not None
        }

    def retarget(self, spec: Spec) -> None:
        self.spec, self.generation = spec, self.generation + 1

    def run(self, ticks: int) -> dict[str, tuple[str, str]]:
        for _ in range(ticks):
            seen = self.tick()
        return seen


def test_a_promotion_is_unknown_until_the_canary_is_stable_then_true() -> None:
    c = Cluster(make_spec("1"))
    assert c.run(2) == {"Promoted": ("True", "RolloutComplete"), "Settled": ("True", "RolloutComplete")}
    c.retarget(make_spec("2"))
    # The very pass that sees the new generation says "in flight" (kubectl wait then keeps waiting).
    assert c.tick()["Promoted"][0] == "Unknown"
    assert c.status.observed_generation == 2
    assert c.run(3) == {"Promoted": ("Unknown", "Paused"), "Settled": ("False", "Paused")}
    c.retarget(make_spec("2", intent={"id": "p1", "promote": "full"}))
    assert c.run(3) == {"Promoted": ("True", "RolloutComplete"), "Settled": ("True", "RolloutComplete")}
    assert c.status.stable is not None
    assert c.status.stable.version == "2"


def test_a_rollback_and_a_rejection_settle_as_not_promoted() -> None:
    c = Cluster(make_spec("1"))
    c.run(2)
    c.retarget(make_spec("2"))
    c.run(3)
    c.retarget(make_spec("2", intent={"id": "a1", "abort": True}))  # kubectl mlrollout abort
    assert c.run(2) == {"Promoted": ("False", "RolledBack"), "Settled": ("True", "RolledBack")}
    c.retarget(make_spec("3"))
    assert c.run(2) == {"Promoted": ("False", "Rejected"), "Settled": ("True", "Rejected")}


def test_a_canary_that_never_becomes_ready_settles_at_its_deadline() -> None:
    c = Cluster(make_spec("1"))
    c.run(2)
    c.broken.add("2")
    c.retarget(make_spec("2"))
    assert c.run(5) == {"Promoted": ("Unknown", "Progressing"), "Settled": ("False", "Progressing")}
    assert c.run(40) == {"Promoted": ("False", "RolledBack"), "Settled": ("True", "RolledBack")}


def test_registry_trouble_keeps_a_new_target_in_flight_or_ends_it() -> None:
    c = Cluster(make_spec("1"))
    c.run(2)
    c.registry_down = True
    c.retarget(make_spec("2"))
    assert c.run(2) == {
        "Promoted": ("Unknown", "RegistryUnreachable"),
        "Settled": ("False", "RegistryUnreachable"),
    }
    c.registry_down = False
    c.retarget(make_spec("7"))  # no such version
    assert c.run(2) == {
        "Promoted": ("False", "ModelVersionNotFound"),
        "Settled": ("True", "ModelVersionNotFound"),
    }

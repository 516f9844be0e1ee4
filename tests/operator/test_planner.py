"""Planner decisions, driven through a tiny in-memory cluster: each tick plans, then the fake cluster
applies the plan (pods become Ready unless a version is marked broken) and time moves on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mlrollout.operator.model import (
    AnalysisInvalid,
    AnalysisResult,
    DeploymentObs,
    Observed,
    ProxyObs,
    RegistryFailure,
    Resolution,
    RouteObs,
    RouteParent,
    Status,
)
from mlrollout.operator.planner import ALIAS_RETRY_SECONDS, AliasMove, Plan, needs_resolution, plan
from mlrollout.operator.routers import RouteWrite
from mlrollout.operator.spec import InvalidSpec, SetWeight, Spec, parse_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ANALYSIS = {"metrics": [{"name": "errorRate", "max": 0.01}]}
GOOD = {"1": 0.90, "2": 0.92, "3": 0.95, "4": 0.40, "5": 0.86}


def make_spec(version: str = "1", **over: Any) -> Spec:
    raw: dict[str, Any] = {
        "model": {"name": "churn", "version": version},
        "serving": {"image": "serve:1", "replicas": 10},
        "gate": {"threshold": 0.85},
        "rollout": {
            "steps": [
                {"setWeight": 10},
                {"pause": {"duration": "30s"}},
                {"setWeight": 50},
                {"pause": {}},
                {"setWeight": 100},
            ],
            "progressDeadlineSeconds": 60,
        },
    }
    for key, value in over.items():
        raw[key] = value
    return parse_spec(raw)


def resolution(version: str) -> Resolution:
    return Resolution(
        version=version,
        model_uri=f"file:///artifacts/{version}/model",
        run_id=f"run{version}",
        gate_value=GOOD.get(version),
    )


@dataclass
class Sim:
    """`lag`: ticks a scale-up takes before its pods are Ready (0: Ready as soon as applied), so the
    planner also sees the "not Ready yet" state real pods go through while they load the model.
    `analysis` is one fresh analysis run, observed by the next tick only (as the runner hands it)."""

    spec: Spec
    status: Status = field(default_factory=Status)
    now: datetime = T0
    deployments: dict[str, DeploymentObs] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # versions whose pods never become Ready
    unready: dict[str, int] = field(default_factory=dict)  # version -> pods of it that never become Ready
    crash: set[str] = field(default_factory=set)
    registry_down: bool = False
    analysis: AnalysisResult | AnalysisInvalid | None = None
    plans: list[Plan] = field(default_factory=list)
    lag: int = 0
    route: ProxyObs | None = None  # the router's proxy objects, as a controller would keep them
    route_accepts: bool = True
    alias_failures: int = 0  # the next N alias moves fail (the applier keeps status.pendingAlias)
    ready_pods: list[int] = field(default_factory=list)  # Ready pods of the ModelDeployment after each tick
    _ticks: int = 0
    _scaled_at: dict[str, int] = field(default_factory=dict)

    def tick(self, seconds: float = 1.0) -> Plan:
        registry: Resolution | RegistryFailure | None = None
        if needs_resolution(self.spec, self.status, self.now):
            if self.registry_down:
                registry = RegistryFailure(
                    True, "RegistryUnreachable", "MLflow at http://x: connection refused"
                )
            elif self.spec.model.version and self.spec.model.version not in GOOD:
                registry = RegistryFailure(False, "ModelVersionNotFound", "no version 99 of churn")
            else:
                registry = resolution(self.spec.model.version or "1")
        obs = Observed(
            now=self.now,
            generation=1,
            deployments=dict(self.deployments),
            registry=registry,
            analysis=self.analysis,
            route=self.route,
        )
        self.analysis = None
        p = plan("churn", self.spec, self.status, obs)
        self.plans.append(p)
        self.status = p.status
        self.apply_route(p)
        if p.aliases:  # as the applier does: a move the registry took clears pendingAlias
            if self.alias_failures:
                self.alias_failures -= 1
            else:
                self.status = replace(self.status, pending_alias=None)
        for name in p.delete:
            self.deployments.pop(name, None)
        for d in p.deployments:
            have = self.deployments.get(d.name)
            if have is None or have.replicas != d.replicas:
                self._scaled_at[d.name] = self._ticks
            settled = self._ticks - self._scaled_at.get(d.name, 0) >= self.lag
            if d.version in self.broken:
                ready = 0
            elif d.version in self.unready:
                ready = max(0, d.replicas - self.unready[d.version])
            elif settled:
                ready = d.replicas
            else:  # scale-downs take pods away at once; scale-ups add them later
                ready = min(have.ready_replicas if have else 0, d.replicas)
            self.deployments[d.name] = DeploymentObs(
                d.name,
                d.version,
                d.replicas,
                ready,
                track=d.track,
                crash_looping=d.version in self.crash and d.replicas > 0,
            )
        self.ready_pods.append(sum(d.ready_replicas for d in self.deployments.values()))
        self._ticks += 1
        self.now += timedelta(seconds=seconds)
        return p

    def apply_route(self, p: Plan) -> None:
        """The applier writes the route, the controller accepts it (a subclass may model another proxy)."""
        if not isinstance(p.route, RouteWrite) or not isinstance(self.route, RouteObs):
            return
        generation = self.route.generation + 1
        parent = RouteParent(
            "ml/gw",
            generation,
            self.route_accepts,
            True,
            "" if self.route_accepts else "NotAllowedByListeners",
            "listener does not allow this route",
        )
        self.route = RouteObs(self.route.name, True, generation, str(generation), p.route.rules, (parent,))

    def result(
        self, verdict: str, action: str | None = None, message: str = "errorRate 0.002 <= 0.01"
    ) -> None:
        """The next tick observes a fresh analysis run about the current canary revision."""
        canary = self.status.canary
        assert canary is not None
        self.analysis = AnalysisResult(
            verdict=verdict,  # type: ignore[arg-type]
            canary_version=canary.version,
            evaluated_at=self.now,
            message=message,
            action=action,
            canary_revision=canary.serving_hash,
            verdict_changed=True,
        )

    def run(self, ticks: int, seconds: float = 1.0) -> None:
        for _ in range(ticks):
            self.tick(seconds)

    def replicas(self) -> dict[str, int]:
        """Replicas per Deployment, named without the pod-template hash (churn-v1-ab12cd -> churn-v1)."""
        return {name.rsplit("-", 1)[0]: d.replicas for name, d in sorted(self.deployments.items())}

    def events(self) -> list[str]:
        return [e.reason for p in self.plans for e in p.events]

    def tags(self) -> list[tuple[str, str]]:
        return [(t.version, t.value) for p in self.plans for t in p.tags]

    def retarget(self, version: str, **over: Any) -> None:
        self.spec = make_spec(version, **over)


def promoted(version: str = "1") -> Sim:
    sim = Sim(make_spec(version))
    sim.run(2)
    assert sim.status.phase == "Promoted"
    return sim


def test_first_version_goes_straight_to_stable() -> None:
    sim = Sim(make_spec("1"))
    p = sim.tick()
    template = sim.spec.serving.template_hash
    assert [(d.name, d.replicas, d.track) for d in p.deployments] == [(f"churn-v1-{template}", 10, "stable")]
    assert sim.status.stable is not None
    assert sim.status.stable.model_uri == "file:///artifacts/1/model"
    assert sim.status.phase == "Progressing"  # pods not Ready yet
    sim.tick()
    assert sim.status.phase == "Promoted"
    assert sim.status.condition("Ready").status == "True"  # type: ignore[union-attr]
    assert sim.status.condition("GatePassed").status == "True"  # type: ignore[union-attr]
    assert sim.events() == ["GatePassed", "StableDeployed", "Available"]
    assert sim.tags() == [("1", "deployed")]


def test_gate_rejects_below_threshold_without_touching_serving() -> None:
    sim = Sim(make_spec("4"))
    p = sim.tick()
    assert p.deployments == ()
    assert sim.status.phase == "Rejected"
    gate = sim.status.condition("GatePassed")
    assert gate is not None
    assert gate.status == "False"
    assert gate.message == "f1_score 0.4000 < threshold 0.8500 (version 4)"
    assert sim.tags() == [("4", "rejected")]
    sim.run(3)  # the decision is announced once
    assert sim.events().count("GateFailed") == 1


def test_gate_max_regression_against_stable() -> None:
    sim = Sim(make_spec("3", gate={"threshold": 0.8, "maxRegression": 0.02}))
    sim.run(2)
    sim.retarget("5", gate={"threshold": 0.8, "maxRegression": 0.02})  # 0.86 < 0.95 - 0.02
    sim.tick()
    assert sim.status.phase == "Rejected"
    assert "regresses more than 0.0200 below stable 0.9500" in sim.status.message
    assert sim.replicas() == {"churn-v3": 10}


def test_missing_gate_metric_rejects() -> None:
    sim = Sim(make_spec("1"))
    sim.status = Status()
    obs = Observed(now=T0, generation=1, registry=replace(resolution("1"), gate_value=None))
    p = plan("churn", sim.spec, sim.status, obs)
    assert p.status.phase == "Rejected"
    assert "metric f1_score is missing" in p.status.message


def test_canary_walks_steps_with_replica_ratio_then_promotes() -> None:
    sim = promoted("1")
    sim.retarget("2")
    seen: list[tuple[int, dict[str, int], str]] = []
    for _ in range(60):
        sim.tick(1)
        seen.append((sim.status.weight, sim.replicas(), sim.status.phase))
        if sim.status.phase == "Paused":
            break
    assert (10, {"churn-v1": 9, "churn-v2": 1}, "Progressing") in seen
    assert seen[-1] == (50, {"churn-v1": 5, "churn-v2": 5}, "Paused")  # indefinite pause waits
    assert sim.status.current_step_index == 3
    sim.run(5)
    assert sim.status.phase == "Paused"  # still waiting: only a promote intent moves on
    sim.spec = replace(sim.spec, intent=make_spec("2", intent={"id": "p1", "promote": "step"}).intent)
    sim.run(4)
    assert sim.status.phase == "Promoted"
    assert sim.status.stable is not None
    assert sim.status.stable.version == "2"
    assert sim.status.canary is None
    assert sim.replicas() == {"churn-v1": 0, "churn-v2": 10}  # old stable kept at zero for undo
    assert [h.version for h in sim.status.history] == ["1"]
    assert sim.status.last_intent_id == "p1"
    assert sim.events().count("Promoted") == 1
    assert ("2", "deployed") in sim.tags()


def test_pause_with_duration_waits_its_time() -> None:
    sim = promoted("1")
    sim.retarget("2")
    sim.run(3)  # setWeight 10 done, in the 30s pause
    assert sim.status.current_step_index == 1
    p = sim.tick(1)
    assert p.requeue_after is not None
    assert 0 < p.requeue_after <= 30
    sim.run(30)
    assert sim.status.current_step_index is not None
    assert sim.status.current_step_index >= 2


def test_promote_full_intent_skips_remaining_steps() -> None:
    sim = promoted("1")
    sim.retarget("2")
    sim.run(3)
    sim.retarget("2", intent={"id": "x", "promote": "full"})
    sim.run(2)
    assert sim.status.phase == "Promoted"
    assert sim.replicas() == {"churn-v1": 0, "churn-v2": 10}


def test_intent_applies_once() -> None:
    sim = promoted("1")
    sim.retarget("2", intent={"id": "same", "promote": "step"})
    sim.run(2)
    step = sim.status.current_step_index
    sim.run(2)
    assert sim.status.current_step_index == step or sim.status.phase == "Progressing"
    assert sim.events().count("StepPromoted") == 1


def test_never_ready_canary_rolls_back_after_deadline() -> None:
    sim = promoted("1")
    sim.broken.add("2")
    sim.retarget("2")
    sim.run(30, seconds=1)
    assert sim.status.phase == "Progressing"
    sim.run(40, seconds=1)
    assert sim.status.phase == "RolledBack"
    assert sim.status.abandoned is not None
    assert sim.status.abandoned.reason == "ProgressDeadlineExceeded"
    assert "0/1 pods ready after 60s" in sim.status.message
    assert sim.replicas() == {"churn-v1": 10}  # canary deleted, stable back to full
    assert ("2", "rolled_back") in sim.tags()
    sim.run(5)
    assert sim.status.phase == "RolledBack"  # not retried while the target stays the same
    assert sim.events().count("RolledBack") == 1


def test_crash_looping_canary_rolls_back_at_once() -> None:
    sim = promoted("1")
    sim.crash.add("2")
    sim.retarget("2")
    sim.run(2)
    assert sim.status.phase == "RolledBack"
    assert sim.status.abandoned is not None
    assert sim.status.abandoned.reason == "CrashLoop"


def test_abort_intent_rolls_back() -> None:
    sim = promoted("1")
    sim.retarget("2")
    sim.run(3)
    sim.retarget("2", intent={"id": "a", "abort": True})
    sim.tick()
    assert sim.status.phase == "RolledBack"
    assert sim.status.abandoned is not None
    assert sim.status.abandoned.reason == "Aborted"
    sim.tick()
    assert sim.replicas() == {"churn-v1": 10}


def test_new_version_mid_rollout_restarts_canary_from_step_zero() -> None:
    sim = promoted("1")
    sim.retarget("2")
    sim.run(40)
    assert sim.status.current_step_index == 3
    assert sim.replicas() == {"churn-v1": 5, "churn-v2": 5}
    sim.retarget("3")
    sim.tick()
    assert sim.status.canary is not None
    assert sim.status.canary.version == "3"
    assert sim.status.current_step_index == 0
    # The old canary keeps serving until stable and the new canary are Ready, then it goes.
    assert sim.replicas() == {"churn-v1": 9, "churn-v2": 5, "churn-v3": 1}
    sim.tick()
    assert sim.replicas() == {"churn-v1": 9, "churn-v3": 1}
    assert "CanaryRestarted" in sim.events()


def test_undo_restores_a_kept_version_instantly() -> None:
    sim = promoted("1")
    sim.retarget("2", intent={"id": "f", "promote": "full"})
    sim.run(4)
    assert sim.status.stable is not None
    assert sim.status.stable.version == "2"
    sim.retarget("1", intent={"id": "u", "undo": {"version": "1"}})
    sim.tick()
    assert sim.status.stable is not None
    assert sim.status.stable.version == "1"
    assert sim.status.canary is None
    # Instant in status; version 2 keeps serving until version 1's pods are Ready.
    assert sim.replicas() == {"churn-v1": 10, "churn-v2": 10}
    sim.tick()
    assert sim.replicas() == {"churn-v1": 10, "churn-v2": 0}
    assert [h.version for h in sim.status.history] == ["2"]
    assert "Undone" in sim.events()


def test_history_limit_deletes_old_deployments() -> None:
    sim = promoted("1")
    for i, version in enumerate(["2", "3", "5"]):
        sim.retarget(version, revisionHistoryLimit=1, intent={"id": f"f{i}", "promote": "full"})
        sim.run(3)
    assert sim.status.stable is not None
    assert sim.status.stable.version == "5"
    assert [h.version for h in sim.status.history] == ["3"]
    assert sim.replicas() == {"churn-v3": 0, "churn-v5": 10}


def test_registry_outage_freezes_serving_and_recovers() -> None:
    sim = promoted("1")
    before = sim.replicas()
    sim.registry_down = True
    sim.retarget("2")
    p = sim.tick()
    assert p.delete == ()
    assert sim.replicas() == before
    cond = sim.status.condition("RegistryReachable")
    assert cond is not None
    assert cond.status == "False"
    assert "refused" in cond.message
    assert p.requeue_after is not None
    sim.run(3)
    assert sim.events().count("RegistryUnreachable") == 1
    sim.registry_down = False
    sim.run(2)
    assert sim.status.canary is not None
    assert sim.status.canary.version == "2"
    assert sim.status.condition("RegistryReachable").status == "True"  # type: ignore[union-attr]


def test_unknown_version_is_a_permanent_condition() -> None:
    sim = Sim(make_spec("99"))
    p = sim.tick()
    assert p.deployments == ()
    assert sim.status.phase == "Pending"
    cond = sim.status.condition("RegistryReachable")
    assert cond is not None
    assert cond.reason == "ModelVersionNotFound"
    assert p.requeue_after is None


def test_user_pause_freezes_steps_and_resume_continues() -> None:
    sim = promoted("1")
    sim.retarget("2", paused=True)
    sim.run(40)
    assert sim.status.phase == "Paused"
    assert sim.status.current_step_index == 0 or sim.status.current_step_index == 1
    frozen = sim.status.current_step_index
    sim.run(40)
    assert sim.status.current_step_index == frozen
    sim.retarget("2", paused=False)
    sim.run(40)
    assert sim.status.current_step_index == 3  # reached the indefinite pause


@pytest.mark.parametrize(
    ("verdict", "action", "phase"),
    [
        ("Passed", "Proceed", "Promoted"),
        ("Failed", "Rollback", "RolledBack"),
        ("Failed", "Hold", "Progressing"),  # failing, but failureLimit not reached yet
        ("Failed", None, "RolledBack"),  # a writer without actions: a failure is final
        ("Inconclusive", "Hold", "Paused"),
    ],
)
def test_analysis_step_follows_the_verdict(verdict: str, action: str | None, phase: str) -> None:
    steps = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 100}]
    sim = promoted("1")
    sim.retarget("2", rollout={"steps": steps, "analysis": ANALYSIS})
    sim.run(3)
    assert sim.status.current_step_index == 1
    assert "waiting for canary analysis" in sim.status.message
    sim.result(verdict, action)
    sim.run(3)
    assert sim.status.phase == phase
    if phase == "Paused":
        assert sim.status.pause_reason == "AnalysisInconclusive"


def test_stale_analysis_verdict_is_ignored() -> None:
    """A verdict recorded before the canary started (here: left in status by an older operator)
    is not about this canary, whatever its version says."""
    steps = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 100}]
    sim = promoted("1")
    sim.status = replace(
        sim.status,
        last_analysis=AnalysisResult(verdict="Passed", canary_version="2", evaluated_at=T0),
    )
    sim.retarget("2", rollout={"steps": steps, "analysis": ANALYSIS})
    sim.run(5)
    assert sim.status.current_step_index == 1  # the verdict predates the step
    assert sim.status.last_analysis is None  # a new canary starts with a clean slate


def test_alias_is_re_resolved_periodically() -> None:
    spec = parse_spec({"model": {"name": "churn", "alias": "champion"}, "serving": {"image": "i"}})
    st = Status(resolved=Resolution("1", "u", None, 0.9, request="churn@alias:champion", at=T0))
    assert not needs_resolution(spec, st, T0 + timedelta(seconds=10))
    assert needs_resolution(spec, st, T0 + timedelta(seconds=61))
    assert needs_resolution(make_spec("2"), st, T0)


def test_status_round_trips_through_dict() -> None:
    sim = promoted("1")
    sim.retarget("2")
    sim.run(4)
    assert Status.from_dict(sim.status.to_dict()) == sim.status


def test_serving_template_change_is_a_new_revision_behind_a_canary() -> None:
    sim = promoted("1")
    stable_name = sim.status.stable.deployment  # type: ignore[union-attr]
    sim.retarget("1", serving={"image": "serve:1", "replicas": 10, "nodeSelector": {"pool": "none"}})
    sim.broken.add("1")  # the new template's pods never become Ready...
    sim.deployments[stable_name] = replace(sim.deployments[stable_name], ready_replicas=10)
    sim.tick()
    canary = sim.status.canary
    assert canary is not None
    assert canary.version == "1"
    assert canary.deployment != stable_name
    assert sim.status.stable is not None
    assert sim.status.stable.deployment == stable_name  # ...and the stable Deployment is a different one


def test_analysis_rollback_applies_at_any_step() -> None:
    sim = promoted("1")
    sim.retarget("2", rollout={"analysis": ANALYSIS})  # the default steps: no analysis step
    sim.run(3)
    assert sim.status.current_step_index == 1  # in a plain pause
    sim.result("Failed", "Rollback", "errorRate 0.2 > 0.01; failure 2 of 2")
    sim.tick()
    assert sim.status.phase == "RolledBack"
    assert sim.status.abandoned is not None
    assert sim.status.abandoned.reason == "AnalysisFailed"
    assert "errorRate 0.2 > 0.01" in sim.status.message
    assert "AnalysisFailed" in sim.events()
    sim.tick()
    assert sim.replicas() == {"churn-v1": 10}


def test_analysis_about_another_canary_is_ignored() -> None:
    sim = promoted("1")
    sim.retarget("2", rollout={"analysis": ANALYSIS})
    sim.run(2)
    sim.analysis = AnalysisResult(
        verdict="Failed", canary_version="9", evaluated_at=sim.now, action="Rollback"
    )
    sim.run(3)
    assert sim.status.phase == "Progressing"
    assert sim.status.last_analysis is None


def test_relaxing_the_gate_admits_a_rejected_version() -> None:
    sim = Sim(make_spec("4"))
    sim.run(3)
    assert sim.status.phase == "Rejected"
    assert sim.events().count("GateFailed") == 1
    sim.retarget("4", gate={"threshold": 0.3})
    sim.run(2)
    assert sim.status.phase == "Promoted"
    assert sim.status.stable is not None
    assert sim.status.stable.version == "4"


# --------------------------------------------------------------------------- transitions without an outage
def at_weight(weight: int, lag: int) -> Sim:
    """Stable 1, canary 2 holding at `weight` (an indefinite pause after the setWeight step)."""
    sim = promoted("1")
    sim.lag = lag
    sim.retarget("2", rollout={"steps": [{"setWeight": weight}, {"pause": {}}, {"setWeight": 100}]})
    sim.run(10)
    assert sim.status.weight == weight
    assert sim.status.pause_reason == "PauseStep"
    return sim


def promote_full(sim: Sim) -> None:
    sim.retarget("2", rollout=sim_rollout(sim), intent={"id": "p", "promote": "full"})


def abort(sim: Sim) -> None:
    sim.retarget("2", rollout=sim_rollout(sim), intent={"id": "a", "abort": True})


def analysis_rollback(sim: Sim) -> None:
    sim.retarget("2", rollout={**sim_rollout(sim), "analysis": ANALYSIS})
    sim.result("Failed", "Rollback", "errorRate 0.3 > 0.01; failure 2 of 2")


def new_target(sim: Sim) -> None:
    sim.retarget("3", rollout=sim_rollout(sim))


def sim_rollout(sim: Sim) -> dict[str, Any]:
    weight = next(s.weight for s in sim.spec.steps if isinstance(s, SetWeight))
    return {"steps": [{"setWeight": weight}, {"pause": {}}, {"setWeight": 100}]}


@pytest.mark.parametrize("lag", [0, 1, 3])
@pytest.mark.parametrize(
    ("weight", "change", "serving_after"),
    [
        (50, promote_full, {"churn-v1": 0, "churn-v2": 10}),
        (50, abort, {"churn-v1": 10}),
        (100, abort, {"churn-v1": 10}),  # rollback at 100: stable is scaled up from 0 first
        (100, analysis_rollback, {"churn-v1": 10}),
        (10, analysis_rollback, {"churn-v1": 10}),
        (50, new_target, {"churn-v1": 5, "churn-v3": 5}),  # the new canary walks to its first step
        (100, promote_full, {"churn-v1": 0, "churn-v2": 10}),
    ],
)
def test_transitions_bring_incoming_pods_ready_before_outgoing_scale_down(
    weight: int, change: Any, serving_after: dict[str, int], lag: int
) -> None:
    """Whatever the transition and however long pods take to become Ready, the ModelDeployment
    never has fewer Ready pods than spec.serving.replicas (10): no request finds nobody to answer."""
    sim = at_weight(weight, lag)
    before = len(sim.ready_pods)
    change(sim)
    sim.run(12)
    assert min(sim.ready_pods[before:]) >= 10, sim.ready_pods[before:]
    assert sim.replicas() == serving_after


@pytest.mark.parametrize("lag", [1, 3])
def test_undo_to_a_kept_version_waits_for_its_pods(lag: int) -> None:
    sim = promoted("1")
    sim.retarget("2", intent={"id": "f", "promote": "full"})
    sim.run(4)
    sim.lag = lag
    before = len(sim.ready_pods)
    sim.retarget("1", intent={"id": "u", "undo": {"version": "1"}})
    sim.tick()
    assert sim.replicas() == {"churn-v1": 10, "churn-v2": 10}  # v2 serves while v1 loads
    sim.run(lag + 3)
    assert min(sim.ready_pods[before:]) >= 10
    assert sim.replicas() == {"churn-v1": 10, "churn-v2": 0}


@pytest.mark.parametrize(
    ("name", "setup"),
    [
        ("undo", lambda sim: sim.retarget("1", intent={"id": "u", "undo": {"version": "1"}})),
        ("rollback at 100", None),
    ],
)
def test_when_the_incoming_side_never_becomes_ready_the_outgoing_side_stays(name: str, setup: Any) -> None:
    if setup is not None:
        sim = promoted("1")
        sim.retarget("2", intent={"id": "f", "promote": "full"})
        sim.run(4)
        sim.broken.add("1")
        setup(sim)
        serving = "churn-v2"
    else:
        sim = at_weight(100, 0)
        sim.broken.add("1")
        abort(sim)
        serving = "churn-v2"
    sim.run(20)
    assert sim.replicas()[serving] == 10, name
    assert sim.ready_pods[-1] == 10, name
    assert all(p.requeue_after is not None for p in sim.plans[-5:])  # it keeps looking


def test_a_draining_deployment_is_never_created_and_goes_once_incoming_is_ready() -> None:
    sim = at_weight(100, 2)
    abort(sim)
    p = sim.tick()
    draining = [d for d in p.deployments if d.draining]
    assert [(d.version, d.replicas, d.track) for d in draining] == [("2", 10, "canary")]
    assert p.delete == ()
    sim.run(5)
    assert [n.rsplit("-", 1)[0] for p in sim.plans[-5:] for n in p.delete] == ["churn-v2"]  # deleted once
    assert "churn-v2" not in sim.replicas()


def test_an_outgoing_side_with_a_dead_pod_does_not_block_the_rollout() -> None:
    """Stable has two pods that never become Ready: scaling it down is still allowed once the
    incoming canary pods are Ready, so the steps progress."""
    sim = promoted("1")
    sim.unready["1"] = 2
    sim.retarget("2")
    sim.run(40)
    assert sim.status.current_step_index == 3  # reached the indefinite pause at 50%
    assert sim.replicas() == {"churn-v1": 5, "churn-v2": 5}


# --------------------------------------------------------------------------- analysis policy
@pytest.mark.parametrize(
    ("results", "phase", "pause_reason"),
    [
        ([], "Progressing", None),  # no verdict yet: no evidence, no promotion
        ([("Inconclusive", "Hold")], "Paused", "AnalysisInconclusive"),
        ([("Failed", "Hold")], "Progressing", None),
        ([("Passed", "Proceed"), ("Inconclusive", "Hold")], "Paused", "AnalysisInconclusive"),
        ([("Inconclusive", "Hold"), ("Passed", "Proceed")], "Promoted", None),
    ],
)
def test_without_an_analysis_step_the_latest_verdict_still_gates_promotion(
    results: list[tuple[str, str]], phase: str, pause_reason: str | None
) -> None:
    sim = promoted("1")
    steps = [{"setWeight": 50}, {"pause": {"duration": "30s"}}, {"setWeight": 100}]
    sim.retarget("2", rollout={"steps": steps, "analysis": ANALYSIS})
    sim.run(2)
    for verdict, action in results:  # all during the pause
        sim.result(verdict, action)
        sim.tick()
    sim.run(6, seconds=10)
    assert sim.status.phase == phase, sim.status.message
    assert sim.status.pause_reason == pause_reason
    if phase != "Promoted":
        assert sim.status.canary is not None
        assert "Promoted" not in sim.events()


def test_the_user_can_still_promote_past_an_inconclusive_analysis() -> None:
    sim = promoted("1")
    rollout = {"steps": [{"setWeight": 50}, {"setWeight": 100}], "analysis": ANALYSIS}
    sim.retarget("2", rollout=rollout)
    sim.run(2)
    sim.result("Inconclusive", "Hold")
    sim.run(3)
    assert sim.status.pause_reason == "AnalysisInconclusive"
    sim.retarget("2", rollout=rollout, intent={"id": "p", "promote": "full"})
    sim.run(3)
    assert sim.status.phase == "Promoted"


def test_a_retry_of_a_rolled_back_version_after_a_serving_change_starts_clean() -> None:
    sim = promoted("1")
    rollout = {"analysis": ANALYSIS}
    sim.retarget("2", rollout=rollout)
    sim.run(3)
    sim.result("Failed", "Rollback", "errorRate 0.3 > 0.01; failure 2 of 2")
    sim.run(3)
    assert sim.status.phase == "RolledBack"
    kept = sim.status.last_analysis
    assert kept is not None  # kept after the rollback: it says why
    assert kept.verdict == "Failed"
    sim.run(3)
    assert sim.status.canary is None  # not retried while the target is the same revision
    sim.retarget("2", rollout=rollout, serving={"image": "serve:2", "replicas": 10})
    sim.run(3)
    assert sim.status.canary is not None
    assert sim.status.canary.version == "2"
    assert sim.status.last_analysis is None  # nothing inherited from the rolled-back canary
    assert sim.status.phase == "Progressing"
    assert sim.events().count("RolledBack") == 1


def test_a_result_recorded_for_the_canary_carries_its_revision_and_is_announced_once() -> None:
    sim = promoted("1")
    sim.retarget("2", rollout={"analysis": ANALYSIS})
    sim.run(2)
    sim.result("Inconclusive", "Hold", "errorRate: 3 requests < minSamples 100")
    sim.tick()
    recorded = sim.status.last_analysis
    assert recorded is not None
    assert (recorded.canary_version, recorded.canary_revision) == ("2", sim.spec.serving.template_hash)
    assert sim.status.to_dict()["lastAnalysis"]["canaryRevision"] == sim.spec.serving.template_hash
    assert sim.events().count("AnalysisInconclusive") == 1
    sim.analysis = replace(recorded, verdict_changed=False, evaluated_at=sim.now)  # same verdict again
    sim.tick()
    assert sim.events().count("AnalysisInconclusive") == 1


def test_an_invalid_analysis_spec_is_one_condition_and_one_event_not_a_loop() -> None:
    steps = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 100}]
    sim = promoted("1")
    sim.retarget("2", rollout={"steps": steps, "analysis": {"metrics": []}})
    statuses = []
    for _ in range(10):
        sim.analysis = AnalysisInvalid("spec.rollout.analysis.prometheus.address is required")
        statuses.append(sim.tick().status.to_dict())
    assert sim.events().count("AnalysisInvalid") == 1
    cond = sim.status.condition("AnalysisValid")
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", "InvalidAnalysisSpec")
    assert sim.status.phase == "Paused"
    assert sim.status.pause_reason == "AnalysisInvalid"
    assert statuses[-1] == statuses[-2] == statuses[-3]  # nothing changes: the applier writes nothing
    assert sim.plans[-1].events == ()


@pytest.mark.parametrize(
    ("pause", "reason"),
    [
        ({"paused": True}, "User"),
        ({}, "PauseStep"),
    ],
)
def test_pause_reasons_are_typed(pause: dict[str, Any], reason: str) -> None:
    sim = promoted("1")
    sim.retarget("2", **pause)
    sim.run(60)
    assert sim.status.phase == "Paused"
    assert sim.status.pause_reason == reason
    assert sim.status.to_dict()["pauseReason"] == reason
    assert Status.from_dict(sim.status.to_dict()).pause_reason == reason


# --------------------------------------------------------------------------- MLflow alias
def test_promote_alias_moves_after_promotion_and_never_on_rollback() -> None:
    sim = promoted("1")
    sim.retarget("2", rollout={"promoteAlias": "champion"}, intent={"id": "p", "promote": "full"})
    sim.run(3)
    moves = [(m.alias, m.version) for p in sim.plans for m in p.aliases]
    assert moves == [("champion", "2")]
    assert sim.status.pending_alias is None
    sim.retarget("3", rollout={"promoteAlias": "champion"}, intent={"id": "a", "abort": True})
    sim.run(3)
    sim.retarget("3", rollout={"promoteAlias": "champion"})
    sim.run(3)
    sim.retarget("3", rollout={"promoteAlias": "champion"}, intent={"id": "a2", "abort": True})
    sim.run(3)
    assert sim.status.phase == "RolledBack"
    assert [(m.alias, m.version) for p in sim.plans for m in p.aliases] == [("champion", "2")]


def test_a_failed_alias_move_stays_pending_and_is_retried_until_the_registry_takes_it() -> None:
    sim = promoted("1")
    sim.alias_failures = 2
    sim.retarget("2", rollout={"promoteAlias": "champion"}, intent={"id": "p", "promote": "full"})
    sim.run(2)
    assert sim.status.phase == "Promoted"
    assert sim.status.pending_alias == AliasMove("champion", "2")
    assert sim.status.to_dict()["pendingAlias"] == {"alias": "champion", "version": "2"}
    assert Status.from_dict(sim.status.to_dict()).pending_alias == AliasMove("champion", "2")
    assert sim.plans[-1].requeue_after is not None
    assert sim.plans[-1].requeue_after <= ALIAS_RETRY_SECONDS
    sim.run(3)
    moves = [(m.alias, m.version) for p in sim.plans for m in p.aliases]
    assert moves == [("champion", "2")] * 3  # two failures, then taken; never again after
    assert sim.status.pending_alias is None
    assert sim.status.to_dict()["pendingAlias"] is None  # a merge patch clears the field


def test_promote_alias_is_validated() -> None:
    with pytest.raises(InvalidSpec, match="promoteAlias"):
        make_spec("1", rollout={"promoteAlias": "not an alias"})


# --------------------------------------------------------------------------- gatewayAPI router
ROUTE_RULES = (
    {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"group": "", "kind": "Service", "name": "churn-stable", "port": 8080, "weight": 1}],
    },
)


def gateway_sim(steps: list[dict[str, Any]], *, accepts: bool = True) -> Sim:
    router = {"gatewayAPI": {"httpRoute": "churn", "canaryReplicas": 1}}
    sim = Sim(
        make_spec(
            "1",
            serving={"image": "serve:1", "replicas": 3},
            rollout={"steps": steps, "trafficRouter": router},
        )
    )
    sim.route = RouteObs("churn", True, 1, "1", ROUTE_RULES, (RouteParent("ml/gw", 1, True, True),))
    sim.route_accepts = accepts
    sim.run(3)
    assert sim.status.phase == "Promoted"
    return sim


def route_weight(sim: Sim) -> int | None:
    from mlrollout.operator.routers.gateway_api import applied_weight

    assert sim.route is not None
    return applied_weight(sim.route.rules, "churn-stable", "churn-canary")


def test_gateway_steps_wait_for_the_route_and_the_canary_keeps_one_pod_at_any_weight() -> None:
    sim = gateway_sim([{"setWeight": 1}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])
    sim.spec = make_spec(
        "2",
        serving={"image": "serve:1", "replicas": 3},
        rollout={
            "steps": [{"setWeight": 1}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}],
            "trafficRouter": {"gatewayAPI": {"httpRoute": "churn", "canaryReplicas": 1}},
        },
    )
    sim.run(4)
    assert sim.status.phase == "Paused"
    assert sim.status.current_step_index == 1
    assert route_weight(sim) == 1
    assert sorted(sim.replicas().values()) == [1, 3]  # 1 canary pod, stable keeps all 3
    assert sim.status.route is not None
    assert (sim.status.route.weight, sim.status.route.ready) == (1, True)
    assert sim.status.condition("TrafficRouted").status == "True"  # type: ignore[union-attr]
    assert "RouteWeight" in sim.events()


def test_an_unaccepted_route_holds_the_step_with_the_reason() -> None:
    sim = gateway_sim([{"setWeight": 25}, {"pause": {}}], accepts=False)
    sim.spec = make_spec(
        "2",
        serving={"image": "serve:1", "replicas": 3},
        rollout={
            "steps": [{"setWeight": 25}, {"pause": {}}],
            "trafficRouter": {"gatewayAPI": {"httpRoute": "churn"}},
        },
    )
    sim.run(5)
    assert sim.status.phase == "Progressing"
    assert sim.status.current_step_index == 0
    assert "listener does not allow this route" in sim.status.message
    cond = sim.status.condition("TrafficRouted")
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", "NotAllowedByListeners")
    # Announced when first seen, and again after the canary's weight was written: not every pass.
    assert sim.events().count("NotAllowedByListeners") == 2


def test_a_header_rule_is_added_by_its_step_and_removed_on_abort() -> None:
    steps = [
        {"setHeaderRoute": {"headers": [{"name": "X-Canary", "value": "yes"}]}},
        {"setWeight": 5},
        {"pause": {}},
    ]
    router = {"gatewayAPI": {"httpRoute": "churn", "canaryReplicas": 1}}
    sim = gateway_sim(steps)
    sim.spec = make_spec(
        "2", serving={"image": "serve:1", "replicas": 3}, rollout={"steps": steps, "trafficRouter": router}
    )
    sim.run(5)
    assert sim.status.phase == "Paused"
    assert sim.route is not None
    assert [r.get("name") for r in sim.route.rules] == [None, "mlrollout-header-0"]
    assert sim.status.to_dict()["headerRoute"] == [{"name": "X-Canary", "value": "yes", "type": "Exact"}]
    assert "HeaderRouteSet" in sim.events()
    sim.spec = make_spec(
        "2",
        serving={"image": "serve:1", "replicas": 3},
        rollout={"steps": steps, "trafficRouter": router},
        intent={"id": "a", "abort": True},
    )
    sim.run(4)
    assert sim.status.phase == "RolledBack"
    assert [r.get("name") for r in sim.route.rules] == [None]
    assert route_weight(sim) == 0
    assert sim.status.header_route == ()
    assert "HeaderRouteCleared" in sim.events()


@pytest.mark.parametrize("delay", [0, 30])
def test_an_aborted_canary_keeps_its_pods_until_the_proxies_had_the_delay_to_apply_the_route(
    delay: int,
) -> None:
    router = {"gatewayAPI": {"httpRoute": "churn", "canaryReplicas": 1, "scaleDownDelaySeconds": delay}}
    steps = [{"setWeight": 25}, {"pause": {}}]
    sim = gateway_sim(steps)
    serving = {"image": "serve:1", "replicas": 3}
    sim.spec = make_spec("2", serving=serving, rollout={"steps": steps, "trafficRouter": router})
    sim.run(4)
    assert (sim.status.phase, route_weight(sim)) == ("Paused", 25)
    canary = next(n for n, d in sim.deployments.items() if d.version == "2")
    sim.spec = make_spec(
        "2",
        serving=serving,
        rollout={"steps": steps, "trafficRouter": router},
        intent={"id": "a", "abort": True},
    )
    sim.tick()  # the abort: weight 0 written to the route, the route not served yet
    assert route_weight(sim) == 0
    assert sim.deployments[canary].replicas == 1, "scaled down while the route was being written"
    sim.tick()  # the route reads back as written: served from now on
    route = sim.status.route
    assert route is not None
    assert route.ready
    assert route.served_at is not None
    assert sim.status.to_dict()["route"]["servedAt"] == route.served_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if delay == 0:
        assert canary not in sim.deployments or sim.deployments[canary].replicas == 0
        return
    assert sim.deployments[canary].replicas == 1
    requeue = sim.plans[-1].requeue_after
    assert requeue is not None
    assert requeue <= delay
    sim.run(delay - 2)
    assert sim.deployments[canary].replicas == 1, "gone before the delay had passed"
    sim.run(3)
    assert canary not in sim.deployments or sim.deployments[canary].replicas == 0
    assert sim.status.phase == "RolledBack"


def test_a_header_step_needs_a_router_that_routes_by_header() -> None:
    with pytest.raises(InvalidSpec, match=r"steps\[0\].setHeaderRoute needs"):
        make_spec(
            "1",
            rollout={
                "steps": [{"setHeaderRoute": {"headers": [{"name": "X-A", "value": "1"}]}}, {"setWeight": 10}]
            },
        )
    with pytest.raises(InvalidSpec, match=r"headers\[0\].name"):
        make_spec(
            "1",
            rollout={
                "steps": [
                    {"setHeaderRoute": {"headers": [{"name": "bad header", "value": "1"}]}},
                    {"setWeight": 10},
                ],
                "trafficRouter": {"gatewayAPI": {"httpRoute": "r"}},
            },
        )
    with pytest.raises(
        InvalidSpec, match=r"gatewayAPI\.scaleDownDelaySeconds: expected an integer in \[0, 3600\]"
    ):
        make_spec(
            "1", rollout={"trafficRouter": {"gatewayAPI": {"httpRoute": "r", "scaleDownDelaySeconds": 4000}}}
        )
    default = make_spec("1", rollout={"trafficRouter": {"gatewayAPI": {"httpRoute": "r"}}}).router
    assert getattr(default, "scale_down_delay_seconds", None) == 30
    with pytest.raises(InvalidSpec, match=r"gatewayAPI\.httpRoute"):
        make_spec("1", rollout={"trafficRouter": {"gatewayAPI": {"httpRoute": "Not_A_Name"}}})
    with pytest.raises(InvalidSpec, match="exactly one router"):
        make_spec("1", rollout={"trafficRouter": {"gatewayAPI": {"httpRoute": "r"}, "replicas": {}}})

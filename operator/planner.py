"""The pure rollout planner: (spec, status, observed) -> Plan. No I/O, no clock: `observed.now`.

One call decides everything for one reconcile: which Deployments exist with how many replicas,
the new status, the Events and registry tags for decisions taken *now* (so each decision is
announced once), and when to look again. The applier only carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from mlrollout.operator.model import (
    Abandoned,
    AnalysisResult,
    Condition,
    HistoryEntry,
    Observed,
    Phase,
    RegistryFailure,
    Resolution,
    Status,
    Track,
)
from mlrollout.operator.routers import TrafficRouter
from mlrollout.operator.routers.replicas import ReplicasRouter
from mlrollout.operator.spec import Analysis, Pause, SetWeight, Spec

ALIAS_REFRESH = timedelta(seconds=60)  # how often a moving alias is re-resolved
REGISTRY_RETRY_SECONDS = 10.0
WAIT_SECONDS = 5.0  # re-check while waiting on pods or analysis (watch events usually come first)

TAG_STATUS = "mlrollout.status"  # MLflow model-version tag: deployed | rolled_back | rejected


_DEFAULT_ROUTER: TrafficRouter = ReplicasRouter()


@dataclass(frozen=True)
class DesiredDeployment:
    name: str
    version: str
    model_uri: str
    replicas: int
    track: Literal["stable", "canary", "retired"]
    revision: str = ""  # pod-template hash (spec.Serving.template_hash) the Deployment was created with


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Tag:
    version: str
    key: str
    value: str


@dataclass(frozen=True)
class Plan:
    status: Status
    deployments: tuple[DesiredDeployment, ...]
    delete: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    tags: tuple[Tag, ...] = ()
    requeue_after: float | None = None


def deployment_name(md_name: str, version: str, serving_hash: str) -> str:
    """One Deployment per revision: model version plus pod template (like a ReplicaSet's hash)."""
    return f"{md_name}-v{version}-{serving_hash}" if serving_hash else f"{md_name}-v{version}"


def needs_resolution(spec: Spec, status: Status, now: datetime) -> bool:
    """Whether the applier must ask the registry before planning."""
    resolved = status.resolved
    if resolved is None or resolved.request != spec.model.request:
        return True
    if spec.model.alias is not None:  # aliases move; follow them, but not on every event
        return resolved.at is None or now - resolved.at >= ALIAS_REFRESH
    return False


# --------------------------------------------------------------------------- the working state
@dataclass
class _Work:
    """Mutable scratch state for one planning pass."""

    md: str
    spec: Spec
    obs: Observed
    status: Status
    events: list[Event] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    requeue: float | None = None

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def cond(self, type_: str, ok: bool | None, reason: str, message: str) -> None:
        value: Literal["True", "False", "Unknown"] = "Unknown" if ok is None else ("True" if ok else "False")
        self.status = self.status.with_condition(Condition(type_, value, reason, message), self.obs.now)

    def set(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]

    def wait(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def phase(self, phase: Phase, message: str) -> None:
        self.set(phase=phase, message=message)


# --------------------------------------------------------------------------- entry point
def plan(
    md_name: str, spec: Spec, status: Status, observed: Observed, router: TrafficRouter | None = None
) -> Plan:
    router = router if router is not None else _DEFAULT_ROUTER
    w = _Work(
        md=md_name, spec=spec, obs=observed, status=replace(status, observed_generation=observed.generation)
    )

    target = _registry(w)
    if target is not None:
        intent = spec.intent if spec.intent and spec.intent.id != status.last_intent_id else None
        if intent:
            w.set(last_intent_id=intent.id)
        if intent and intent.undo_version is not None:
            _undo(w, intent.undo_version)
        elif intent and intent.abort:
            if w.status.canary:
                _rollback(w, "Aborted", f"rollout of version {w.status.canary.version} aborted by the user")
            else:
                w.event("Normal", "NothingToAbort", "abort requested but no canary is running")
        _reconcile(w, target, router, promote=intent.promote if intent else None)

    return Plan(
        status=w.status,
        deployments=_desired(w, router),
        delete=_deletions(w, router),
        events=tuple(w.events),
        tags=tuple(w.tags),
        requeue_after=w.requeue,
    )


def _registry(w: _Work) -> Resolution | None:
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
        w.set(resolved=replace(answer, request=w.spec.model.request, at=w.obs.now))
    w.cond(
        "RegistryReachable",
        True,
        "Resolved",
        f"{w.spec.model.request} -> version {w.status.resolved.version if w.status.resolved else '?'}",
    )
    resolved = w.status.resolved
    if resolved is None or resolved.request != w.spec.model.request:
        # The applier should have asked the registry; ask for another pass rather than guess.
        w.wait(0)
        return None
    if w.spec.model.alias is not None:
        w.wait(ALIAS_REFRESH.total_seconds())
    return resolved


# --------------------------------------------------------------------------- the state machine
def _reconcile(w: _Work, target: Resolution, router: TrafficRouter, promote: str | None) -> None:
    st = w.status
    if st.stable is None and st.canary is None:
        if _is_abandoned(w, target):
            return
        if _gate(w, target, baseline=None):
            _deploy_first(w, target)
        return
    if st.stable is not None and _same(w, st.stable, target):
        if st.canary is not None:
            w.event(
                "Normal",
                "CanaryCancelled",
                f"target is back to stable version {target.version}; canary {st.canary.version} removed",
            )
            _drop_canary(w)
        w.set(abandoned=None)
        _steady(w)
        return
    if _is_abandoned(w, target):
        _steady(w)
        return
    if st.canary is None or not _same(w, st.canary, target):
        baseline = st.stable.gate_value if st.stable else None
        if not _gate(w, target, baseline=baseline):
            if st.canary is not None:
                _drop_canary(w)
            _steady(w)
            return
        _start_canary(w, target)
    _walk(w, router, promote)


def _same(w: _Work, track: Track, target: Resolution) -> bool:
    """Same revision: same model version and same pod template."""
    return track.version == target.version and track.serving_hash == w.spec.serving.template_hash


def _is_abandoned(w: _Work, target: Resolution) -> bool:
    """A rolled-back revision stays down until the target changes. A gate rejection is re-judged
    every pass instead (cheap: the metric is cached in status.resolved), so relaxing the gate in
    the spec takes effect."""
    ab = w.status.abandoned
    return (
        ab is not None
        and ab.reason != "GateFailed"
        and ab.version == target.version
        and ab.serving_hash == w.spec.serving.template_hash
    )


def _gate(w: _Work, target: Resolution, baseline: float | None) -> bool:
    gate = w.spec.gate
    value = target.gate_value
    if value is None:
        ok, why = False, f"metric {gate.metric} is missing on run {target.run_id} of version {target.version}"
    elif value < gate.threshold:
        ok, why = (
            False,
            f"{gate.metric} {value:.4f} < threshold {gate.threshold:.4f} (version {target.version})",
        )
    elif gate.max_regression is not None and baseline is not None and value < baseline - gate.max_regression:
        ok, why = (
            False,
            (
                f"{gate.metric} {value:.4f} regresses more than {gate.max_regression:.4f} below stable "
                f"{baseline:.4f} (version {target.version})"
            ),
        )
    else:
        floor = (
            f" and stable {baseline:.4f} - {gate.max_regression:.4f}"
            if (gate.max_regression is not None and baseline is not None)
            else ""
        )
        ok, why = (
            True,
            f"{gate.metric} {value:.4f} >= threshold {gate.threshold:.4f}{floor} (version {target.version})",
        )
    before = w.status.condition("GatePassed")
    w.cond("GatePassed", ok, "GatePassed" if ok else "GateFailed", why)
    announce = before is None or before.message != why or before.status != ("True" if ok else "False")
    if ok:
        if announce or w.status.abandoned is not None:
            w.event("Normal", "GatePassed", why)
    else:
        rejected = Abandoned(target.version, "GateFailed", why, w.spec.serving.template_hash)
        w.set(abandoned=rejected, phase="Rejected", message=why)
        if announce:
            w.event("Warning", "GateFailed", why)
            w.tags.append(Tag(target.version, TAG_STATUS, "rejected"))
    return ok


def _track(w: _Work, target: Resolution) -> Track:
    serving_hash = w.spec.serving.template_hash
    return Track(
        version=target.version,
        model_uri=target.model_uri,
        deployment=deployment_name(w.md, target.version, serving_hash),
        run_id=target.run_id,
        gate_value=target.gate_value,
        serving_hash=serving_hash,
    )


def _deploy_first(w: _Work, target: Resolution) -> None:
    w.set(stable=_track(w, target), weight=0, current_step_index=None, step_started_at=None, abandoned=None)
    w.event(
        "Normal",
        "StableDeployed",
        f"first version {target.version} goes straight to stable ({target.model_uri})",
    )
    w.tags.append(Tag(target.version, TAG_STATUS, "deployed"))
    _steady(w)


def _steady(w: _Work) -> None:
    """No canary: the stable track serves everything. Phase follows its readiness."""
    st = w.status
    if st.stable is None:
        return
    obs = w.obs.deployments.get(st.stable.deployment)
    ready = obs is not None and obs.replicas == w.spec.serving.replicas and obs.ready_replicas >= obs.replicas
    keep = st.phase in ("Rejected", "RolledBack") and st.abandoned is not None
    if ready:
        w.set(stable_not_ready_since=None)
        w.cond(
            "Ready",
            True,
            "Available",
            f"version {st.stable.version}: {obs.ready_replicas if obs else 0} pods ready",
        )
        if st.phase not in ("Promoted",) and not keep:
            w.event("Normal", "Available", f"version {st.stable.version} is serving")
        if not keep:
            w.phase("Promoted", f"version {st.stable.version} is stable")
            w.cond("Progressing", False, "RolloutComplete", f"version {st.stable.version} is stable")
        return
    since = st.stable_not_ready_since or w.obs.now
    w.set(stable_not_ready_since=since)
    have = obs.ready_replicas if obs else 0
    msg = f"version {st.stable.version}: {have}/{w.spec.serving.replicas} pods ready"
    w.cond("Ready", False, "Unavailable", msg)
    deadline = since + timedelta(seconds=w.spec.progress_deadline_seconds)
    if w.obs.now >= deadline:
        if st.phase != "Degraded":
            w.event("Warning", "ProgressDeadlineExceeded", f"{msg} after {w.spec.progress_deadline_seconds}s")
        w.phase("Degraded", f"{msg} after {w.spec.progress_deadline_seconds}s")
    else:
        if not keep:
            w.phase("Progressing", msg)
            w.cond("Progressing", True, "StableProgressing", msg)
        w.wait(min(WAIT_SECONDS, (deadline - w.obs.now).total_seconds()))


def _start_canary(w: _Work, target: Resolution) -> None:
    old = w.status.canary
    if old is not None:
        w.event(
            "Normal",
            "CanaryRestarted",
            f"new target version {target.version} replaces canary {old.version}; restarting at step 0",
        )
        w.tags.append(Tag(old.version, TAG_STATUS, "superseded"))
    w.set(
        canary=_track(w, target),
        weight=0,
        current_step_index=0,
        step_started_at=w.obs.now,
        canary_not_ready_since=None,
        abandoned=None,
    )
    w.event("Normal", "CanaryStarted", f"version {target.version} starts as canary ({target.model_uri})")


def _drop_canary(w: _Work) -> None:
    w.set(canary=None, weight=0, current_step_index=None, step_started_at=None, canary_not_ready_since=None)


def _rollback(w: _Work, reason: str, message: str) -> None:
    canary = w.status.canary
    if canary is None:
        return
    _drop_canary(w)
    abandoned = Abandoned(canary.version, reason, message, canary.serving_hash)
    w.set(abandoned=abandoned, phase="RolledBack", message=message)
    w.cond("Progressing", False, reason, message)
    w.event("Warning", "RolledBack", f"{reason}: {message}")
    w.tags.append(Tag(canary.version, TAG_STATUS, "rolled_back"))


def _promote(w: _Work, how: str) -> None:
    st = w.status
    canary = st.canary
    assert canary is not None
    history = list(st.history)
    if st.stable is not None:
        revision = max((h.revision for h in history), default=0) + 1
        history.insert(0, HistoryEntry.retire(st.stable, revision, w.obs.now))
    history = [h for h in history if h.deployment != canary.deployment][: w.spec.history_limit]
    w.set(stable=canary, history=tuple(history))
    _drop_canary(w)
    w.event("Normal", "Promoted", f"version {canary.version} promoted to stable ({how})")
    w.tags.append(Tag(canary.version, TAG_STATUS, "deployed"))
    _steady(w)


def _undo(w: _Work, version: str) -> None:
    st = w.status
    entry = next((h for h in st.history if h.version == version), None)
    if st.stable is not None and st.stable.version == version:
        w.event("Normal", "UndoNoop", f"version {version} is already stable")
        if st.canary:
            _rollback(w, "Undone", f"undo to stable version {version}")
        return
    if entry is None:
        kept = ", ".join(h.version for h in st.history) or "none"
        w.event(
            "Warning",
            "UndoUnavailable",
            f"version {version} is not kept for undo (kept: {kept}); rolling it out as a canary instead",
        )
        return
    if st.canary is not None:
        _rollback(w, "Undone", f"undo to version {version} replaced canary {st.canary.version}")
    history = [h for h in w.status.history if h.deployment != entry.deployment]
    if w.status.stable is not None:
        revision = max((h.revision for h in st.history), default=0) + 1
        old = w.status.stable
        history.insert(0, HistoryEntry.retire(old, revision, w.obs.now))
    w.set(stable=entry.track(), history=tuple(history[: w.spec.history_limit]), abandoned=None)
    w.event("Normal", "Undone", f"version {version} restored from history (instant: its Deployment was kept)")
    w.tags.append(Tag(version, TAG_STATUS, "deployed"))


def _walk(w: _Work, router: TrafficRouter, promote: str | None) -> None:
    """Advance the canary through spec.rollout.steps as far as the observed cluster allows."""
    steps = w.spec.steps
    canary = w.status.canary
    assert canary is not None
    c_obs = w.obs.deployments.get(canary.deployment)
    stable_obs = w.obs.deployments.get(w.status.stable.deployment) if w.status.stable else None
    total = w.spec.serving.replicas

    # Safety first: a broken canary rolls back whatever step it is on.
    if c_obs is not None and c_obs.crash_looping:
        _rollback(w, "CrashLoop", f"canary version {canary.version} pods are crash-looping")
        _steady(w)
        return
    analysis = w.obs.analysis
    if analysis is not None and analysis.canary_version == canary.version and analysis.wants_rollback:
        w.cond("AnalysisPassed", False, "AnalysisFailed", analysis.message)
        _rollback(
            w, "AnalysisFailed", analysis.message or f"canary analysis of version {canary.version} failed"
        )
        _steady(w)
        return
    want = router.set_weight(total, w.status.weight).canary_replicas
    if want > 0 and (c_obs is None or c_obs.ready_replicas < want):
        since = w.status.canary_not_ready_since or w.obs.now
        w.set(canary_not_ready_since=since)
        deadline = since + timedelta(seconds=w.spec.progress_deadline_seconds)
        if w.obs.now >= deadline:
            have = c_obs.ready_replicas if c_obs else 0
            hint = " (unschedulable)" if c_obs is not None and c_obs.unschedulable else ""
            _rollback(
                w,
                "ProgressDeadlineExceeded",
                f"canary version {canary.version}: {have}/{want} pods ready{hint} after "
                f"{w.spec.progress_deadline_seconds}s",
            )
            _steady(w)
            return
        w.wait((deadline - w.obs.now).total_seconds())
    else:
        w.set(canary_not_ready_since=None)

    if promote == "full":
        _promote(w, "promoted by the user (full)")
        return
    index = w.status.current_step_index or 0
    if promote == "step" and index < len(steps):
        w.event("Normal", "StepPromoted", f"step {index + 1}/{len(steps)} skipped by the user")
        index += 1
        w.set(current_step_index=index, step_started_at=w.obs.now)
        _enter(w, index, router)

    if w.spec.paused:
        w.phase("Paused", f"paused by the user at step {index + 1}/{len(steps)}")
        w.cond("Progressing", None, "Paused", w.status.message)
        return
    if w.status.phase == "Paused" and _pause_reason(w) == "user":
        # Resuming: the current step's timer restarts so a pause keeps its promised length.
        w.set(step_started_at=w.obs.now)
        w.event("Normal", "Resumed", f"resumed at step {index + 1}/{len(steps)}")

    while index < len(steps):
        step = steps[index]
        started = w.status.step_started_at or w.obs.now
        where = f"step {index + 1}/{len(steps)}"
        if isinstance(step, SetWeight):
            wplan = router.set_weight(total, step.weight)
            if w.status.weight != step.weight:
                w.set(weight=step.weight)
            if not router.verify_weight(wplan, stable_obs, c_obs):
                _progressing(
                    w,
                    f"{where}: setWeight {step.weight} (canary {wplan.canary_replicas}, "
                    f"stable {wplan.stable_replicas} replicas) waiting for pods",
                )
                w.wait(WAIT_SECONDS)
                return
        elif isinstance(step, Pause):
            if step.seconds is None:
                w.phase("Paused", f"{where}: paused until promoted (kubectl mlrollout promote)")
                w.cond("Progressing", True, "WaitingForPromote", w.status.message)
                return
            remaining = (started + timedelta(seconds=step.seconds) - w.obs.now).total_seconds()
            if remaining > 0:
                _progressing(w, f"{where}: pause {step.seconds}s ({int(remaining)}s left)")
                w.wait(remaining)
                return
        elif isinstance(step, Analysis):
            verdict = _analysis_for(w.obs.analysis, canary.version, started)
            if verdict is None:
                _progressing(w, f"{where}: waiting for canary analysis")
                w.wait(WAIT_SECONDS)
                return
            if verdict.verdict == "Failed":  # below failureLimit: measure again next interval
                w.cond("AnalysisPassed", False, "AnalysisFailing", verdict.message)
                _progressing(w, f"{where}: analysis failing, measuring again ({verdict.message})")
                w.wait(WAIT_SECONDS)
                return
            if verdict.verdict == "Inconclusive":
                w.cond("AnalysisPassed", None, "AnalysisInconclusive", verdict.message)
                w.phase(
                    "Paused",
                    f"{where}: analysis inconclusive, holding ({verdict.message}); "
                    "promote to continue or abort",
                )
                return
            w.cond("AnalysisPassed", True, "AnalysisPassed", verdict.message)
        index += 1
        w.set(current_step_index=index, step_started_at=w.obs.now)
        w.event("Normal", "StepCompleted", f"{where} done ({_describe(step)})")
        _enter(w, index, router)
    _promote(w, "all steps completed")


def _enter(w: _Work, index: int, router: TrafficRouter) -> None:
    """Bookkeeping when a step begins (weights move immediately so pods start early)."""
    if index < len(w.spec.steps):
        step = w.spec.steps[index]
        if isinstance(step, SetWeight):
            w.set(weight=step.weight)


def _pause_reason(w: _Work) -> str:
    return "user" if w.status.message.startswith("paused by the user") else "step"


def _progressing(w: _Work, message: str) -> None:
    w.phase("Progressing", message)
    w.cond("Progressing", True, "CanaryProgressing", message)


def _describe(step: SetWeight | Pause | Analysis) -> str:
    if isinstance(step, SetWeight):
        return f"setWeight {step.weight}"
    if isinstance(step, Pause):
        return f"pause {step.seconds}s" if step.seconds is not None else "pause until promoted"
    return "analysis passed"


def _analysis_for(result: AnalysisResult | None, version: str, since: datetime) -> AnalysisResult | None:
    """Only a verdict about this canary, taken since the step began, counts."""
    if result is None or result.canary_version != version or result.evaluated_at < since:
        return None
    return result


# --------------------------------------------------------------------------- desired children
def _desired(w: _Work, router: TrafficRouter) -> tuple[DesiredDeployment, ...]:
    st = w.status
    total = w.spec.serving.replicas
    out: list[DesiredDeployment] = []
    if st.canary is not None:
        wplan = router.set_weight(total, st.weight)
        stable_n, canary_n = wplan.stable_replicas, wplan.canary_replicas
    else:
        stable_n, canary_n = total, 0
    if st.stable is not None:
        out.append(
            DesiredDeployment(
                st.stable.deployment,
                st.stable.version,
                st.stable.model_uri,
                stable_n,
                "stable",
                st.stable.serving_hash,
            )
        )
    if st.canary is not None:
        out.append(
            DesiredDeployment(
                st.canary.deployment,
                st.canary.version,
                st.canary.model_uri,
                canary_n,
                "canary",
                st.canary.serving_hash,
            )
        )
    taken = {d.name for d in out}
    for h in st.history:
        if h.deployment not in taken:
            out.append(DesiredDeployment(h.deployment, h.version, h.model_uri, 0, "retired", h.serving_hash))
            taken.add(h.deployment)
    return tuple(out)


def _deletions(w: _Work, router: TrafficRouter) -> tuple[str, ...]:
    """Observed Deployments this ModelDeployment no longer wants (after a registry failure: none)."""
    if isinstance(w.obs.registry, RegistryFailure):
        return ()
    keep = {d.name for d in _desired(w, router)}
    return tuple(sorted(name for name in w.obs.deployments if name not in keep))

"""The canary's walk through spec.rollout.steps, the safety checks that roll it back at any step,
the analysis policy (never promote on no evidence), and the steady state without a canary."""

from __future__ import annotations

from datetime import timedelta

from mlrollout.operator.planner import verdicts
from mlrollout.operator.planner.history import promote, rollback
from mlrollout.operator.planner.shadow import shadow_name, shadow_replicas
from mlrollout.operator.planner.work import WAIT_SECONDS, Work
from mlrollout.operator.routers import TrafficRouter
from mlrollout.operator.spec import Analysis, Pause, SetHeaderRoute, SetWeight, Shadow, Step


def steady(w: Work) -> None:
    """No canary: the stable track serves everything. Phase follows its readiness."""
    st = w.status
    if st.stable is None:
        return
    obs = w.obs.deployments.get(st.stable.deployment)
    ready = obs is not None and obs.replicas == w.spec.serving.replicas and obs.ready_replicas >= obs.replicas
    keep = st.phase in ("Rejected", "RolledBack") and st.abandoned is not None
    if ready:
        w.update(stable_not_ready_since=None)
        w.cond(
            "Ready",
            True,
            "Available",
            f"version {st.stable.version}: {obs.ready_replicas if obs else 0} pods ready",
        )
        if st.phase != "Promoted" and not keep:
            w.event("Normal", "Available", f"version {st.stable.version} is serving")
        if not keep:
            w.phase("Promoted", f"version {st.stable.version} is stable")
            w.cond("Progressing", False, "RolloutComplete", f"version {st.stable.version} is stable")
        return
    since = st.stable_not_ready_since or w.obs.now
    w.update(stable_not_ready_since=since)
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


def _safety(w: Work, router: TrafficRouter) -> bool:
    """Roll a broken canary back whatever step it is on. False when it was rolled back."""
    canary = w.status.canary
    assert canary is not None
    c_obs = w.obs.deployments.get(canary.deployment)
    if c_obs is not None and c_obs.crash_looping:
        rollback(w, "CrashLoop", f"canary version {canary.version} pods are crash-looping")
        return False
    latest = verdicts.latest(w)
    if latest is not None and latest.wants_rollback:
        w.cond("AnalysisPassed", False, "AnalysisFailed", latest.message)
        rollback(w, "AnalysisFailed", latest.message or f"canary analysis of version {canary.version} failed")
        return False
    want = router.set_weight(w.spec.serving.replicas, w.status.weight).canary_replicas
    if want > 0 and (c_obs is None or c_obs.ready_replicas < want):
        since = w.status.canary_not_ready_since or w.obs.now
        w.update(canary_not_ready_since=since)
        deadline = since + timedelta(seconds=w.spec.progress_deadline_seconds)
        if w.obs.now >= deadline:
            have = c_obs.ready_replicas if c_obs else 0
            hint = " (unschedulable)" if c_obs is not None and c_obs.unschedulable else ""
            rollback(
                w,
                "ProgressDeadlineExceeded",
                f"canary version {canary.version}: {have}/{want} pods ready{hint} after "
                f"{w.spec.progress_deadline_seconds}s",
            )
            return False
        w.wait((deadline - w.obs.now).total_seconds())
    else:
        w.update(canary_not_ready_since=None)
    return True


def _analysis_step(w: Work, where: str) -> bool:
    """An analysis step: done on a Passed verdict about this canary taken since the step began."""
    why = verdicts.invalid(w)
    if why is not None:
        w.phase(
            "Paused", f"{where}: analysis cannot run ({why}); fix spec.rollout.analysis", "AnalysisInvalid"
        )
        w.cond("AnalysisPassed", None, "AnalysisInvalid", why)
        return False
    latest = verdicts.latest(w)
    started = w.status.step_started_at or w.obs.now
    verdict = latest if latest is not None and latest.evaluated_at >= started else None
    if verdict is None:
        _progressing(w, f"{where}: waiting for canary analysis")
        w.wait(WAIT_SECONDS)
        return False
    if verdict.verdict == "Failed":  # below failureLimit: measure again next interval
        w.cond("AnalysisPassed", False, "AnalysisFailing", verdict.message)
        _progressing(w, f"{where}: analysis failing, measuring again ({verdict.message})")
        w.wait(WAIT_SECONDS)
        return False
    if verdict.verdict == "Inconclusive":
        w.cond("AnalysisPassed", None, "AnalysisInconclusive", verdict.message)
        w.phase(
            "Paused",
            f"{where}: analysis inconclusive, holding ({verdict.message}); promote to continue or abort",
            "AnalysisInconclusive",
        )
        return False
    w.cond("AnalysisPassed", True, "AnalysisPassed", verdict.message)
    return True


def _shadow_step(w: Work, step: Shadow, where: str) -> bool:
    """A shadow step: the shadow pods Ready, then the duration, then (with analysis configured) a
    Passed verdict taken during the step. Shadow pods that crash, or never become Ready within the
    progress deadline, roll the canary back; no user was ever served by it."""
    canary = w.status.canary
    assert canary is not None
    started = w.status.step_started_at or w.obs.now
    obs = w.obs.deployments.get(shadow_name(canary.deployment))
    want = shadow_replicas(w.spec.serving.replicas, step.percent)
    if obs is not None and obs.crash_looping:
        rollback(w, "CrashLoop", f"shadow pods of canary version {canary.version} are crash-looping")
        steady(w)
        return False
    if obs is None or obs.ready_replicas < want:
        deadline = started + timedelta(seconds=w.spec.progress_deadline_seconds)
        if w.obs.now >= deadline:
            have = obs.ready_replicas if obs else 0
            rollback(
                w,
                "ProgressDeadlineExceeded",
                f"shadow pods of canary version {canary.version}: {have}/{want} ready after "
                f"{w.spec.progress_deadline_seconds}s",
            )
            steady(w)
            return False
        _progressing(w, f"{where}: shadow {step.percent}% waiting for {want} shadow pods")
        w.wait(min(WAIT_SECONDS, (deadline - w.obs.now).total_seconds()))
        return False
    remaining = (started + timedelta(seconds=step.seconds) - w.obs.now).total_seconds()
    if remaining > 0:
        _progressing(
            w,
            f"{where}: shadow - {step.percent}% of requests copied to version {canary.version}, "
            f"which serves no user ({int(remaining)}s left)",
        )
        w.wait(remaining)
        return False
    return w.spec.analysis is None or _analysis_step(w, where)


def may_promote(w: Work) -> bool:
    """With analysis configured, a canary is promoted automatically only on a Passed latest verdict,
    whatever the steps (an analysis step or not): no evidence is not a pass."""
    if w.spec.analysis is None:
        return True
    where = "all steps done"
    why = verdicts.invalid(w)
    if why is not None:
        w.phase("Paused", f"{where}: analysis cannot run ({why}); not promoting", "AnalysisInvalid")
        w.cond("AnalysisPassed", None, "AnalysisInvalid", why)
        return False
    latest = verdicts.latest(w)
    if latest is None:
        _progressing(w, f"{where}: waiting for a canary analysis verdict before promoting")
        w.wait(WAIT_SECONDS)
        return False
    if latest.verdict == "Passed":
        w.cond("AnalysisPassed", True, "AnalysisPassed", latest.message)
        return True
    if latest.verdict == "Failed":
        w.cond("AnalysisPassed", False, "AnalysisFailing", latest.message)
        _progressing(w, f"{where}: analysis failing, not promoting ({latest.message})")
        w.wait(WAIT_SECONDS)
        return False
    w.cond("AnalysisPassed", None, "AnalysisInconclusive", latest.message)
    w.phase(
        "Paused",
        f"{where}: analysis inconclusive, not promoting ({latest.message}); promote --full or abort",
        "AnalysisInconclusive",
    )
    return False


def walk(w: Work, router: TrafficRouter, promote_intent: str | None) -> None:
    """Advance the canary through spec.rollout.steps as far as the observed cluster allows."""
    if not _safety(w, router):
        steady(w)
        return
    canary = w.status.canary
    assert canary is not None
    steps = w.spec.steps
    c_obs = w.obs.deployments.get(canary.deployment)
    stable_obs = w.obs.deployments.get(w.status.stable.deployment) if w.status.stable else None
    total = w.spec.serving.replicas

    if promote_intent == "full":  # the user's explicit override, analysis or not
        promote(w, "promoted by the user (full)")
        steady(w)
        return
    index = w.status.current_step_index or 0
    if promote_intent == "step" and index < len(steps):
        w.event("Normal", "StepPromoted", f"step {index + 1}/{len(steps)} skipped by the user")
        index += 1
        _enter(w, index)

    if w.spec.paused:
        w.phase("Paused", f"paused by the user at step {index + 1}/{len(steps)}", "User")
        w.cond("Progressing", None, "Paused", w.status.message)
        return
    if w.status.phase == "Paused" and w.status.pause_reason == "User":
        # Resuming: the current step's timer restarts so a pause keeps its promised length.
        w.update(step_started_at=w.obs.now)
        w.event("Normal", "Resumed", f"resumed at step {index + 1}/{len(steps)}")

    while index < len(steps):
        step = steps[index]
        started = w.status.step_started_at or w.obs.now
        where = f"step {index + 1}/{len(steps)}"
        if isinstance(step, SetWeight):
            wplan = router.set_weight(total, step.weight)
            if w.status.weight != step.weight:
                w.update(weight=step.weight)
            if not router.verify_weight(wplan, stable_obs, c_obs):
                _progressing(
                    w,
                    f"{where}: setWeight {step.weight} (canary {wplan.canary_replicas}, "
                    f"stable {wplan.stable_replicas} replicas) waiting for pods",
                )
                w.wait(WAIT_SECONDS)
                return
            if not _route_serves(w, router, where, f"setWeight {step.weight}"):
                return
        elif isinstance(step, SetHeaderRoute):
            if w.status.header_route != step.headers:
                w.update(header_route=step.headers)
                rule = " and ".join(f"{h.name} {h.type} {h.value!r}" for h in step.headers)
                if step.headers:
                    w.event("Normal", "HeaderRouteSet", f"{where}: requests with {rule} go to the canary")
                else:
                    w.event("Normal", "HeaderRouteCleared", f"{where}: header rule removed")
            wplan = router.set_weight(total, w.status.weight)
            if not router.verify_weight(wplan, stable_obs, c_obs):
                _progressing(w, f"{where}: {describe(step)} waiting for {wplan.canary_replicas} canary pods")
                w.wait(WAIT_SECONDS)
                return
            if not _route_serves(w, router, where, describe(step)):
                return
        elif isinstance(step, Pause):
            if step.seconds is None:
                w.phase("Paused", f"{where}: paused until promoted (kubectl mlrollout promote)", "PauseStep")
                w.cond("Progressing", True, "WaitingForPromote", w.status.message)
                return
            remaining = (started + timedelta(seconds=step.seconds) - w.obs.now).total_seconds()
            if remaining > 0:
                _progressing(w, f"{where}: pause {step.seconds}s ({int(remaining)}s left)")
                w.wait(remaining)
                return
        elif isinstance(step, Shadow):
            if not _shadow_step(w, step, where):
                return
        elif not _analysis_step(w, where):
            return
        index += 1
        w.event("Normal", "StepCompleted", f"{where} done ({describe(step)})")
        _enter(w, index)
    if may_promote(w):
        promote(w, "all steps completed")
        steady(w)


def _route_serves(w: Work, router: TrafficRouter, where: str, what: str) -> bool:
    """The proxy carries the status' weight and header rule (always true without a proxy)."""
    verdict = router.route_verdict(w.obs.route, w.status.weight, w.status.header_route)
    if verdict.ok:
        return True
    _progressing(w, f"{where}: {what} waiting for {router.route_name}: {verdict.message}")
    w.wait(WAIT_SECONDS)
    return False


def _enter(w: Work, index: int) -> None:
    """A step begins: its timer starts, and weights move at once so pods start early."""
    w.update(current_step_index=index, step_started_at=w.obs.now)
    if index < len(w.spec.steps):
        step = w.spec.steps[index]
        if isinstance(step, SetWeight):
            w.update(weight=step.weight)


def _progressing(w: Work, message: str) -> None:
    w.phase("Progressing", message)
    w.cond("Progressing", True, "CanaryProgressing", message)


def describe(step: Step) -> str:
    if isinstance(step, SetWeight):
        return f"setWeight {step.weight}"
    if isinstance(step, Pause):
        return f"pause {step.seconds}s" if step.seconds is not None else "pause until promoted"
    if isinstance(step, SetHeaderRoute):
        if not step.headers:
            return "header rule cleared"
        return "header rule " + ", ".join(f"{h.name}={h.value}" for h in step.headers)
    if isinstance(step, Shadow):
        return f"shadow {step.percent}% for {step.seconds}s"
    assert isinstance(step, Analysis)
    return "analysis passed"

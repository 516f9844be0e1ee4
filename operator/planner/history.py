"""Which revision plays which role: first deploy, canary start/replace/drop, rollback, promotion,
undo, and the history of retired stable revisions kept (at 0 replicas) for instant undo.

These only change status; `desired.py` turns roles into replica counts, and holds the outgoing
side up until the incoming side is Ready, so none of these transitions drops a request."""

from __future__ import annotations

from mlrollout.operator.model import Abandoned, AliasMove, HistoryEntry, Resolution, Track
from mlrollout.operator.planner.work import Work


def deployment_name(md_name: str, version: str, serving_hash: str) -> str:
    """One Deployment per revision: model version plus pod template (like a ReplicaSet's hash)."""
    return f"{md_name}-v{version}-{serving_hash}" if serving_hash else f"{md_name}-v{version}"


def same_revision(w: Work, track: Track, target: Resolution) -> bool:
    """Same revision: same model version and same pod template."""
    return track.version == target.version and track.serving_hash == w.spec.serving.template_hash


def new_track(w: Work, target: Resolution) -> Track:
    serving_hash = w.spec.serving.template_hash
    return Track(
        version=target.version,
        model_uri=target.model_uri,
        deployment=deployment_name(w.md, target.version, serving_hash),
        run_id=target.run_id,
        gate_value=target.gate_value,
        serving_hash=serving_hash,
    )


def deploy_first(w: Work, target: Resolution) -> None:
    w.update(
        stable=new_track(w, target), weight=0, current_step_index=None, step_started_at=None, abandoned=None
    )
    w.event(
        "Normal",
        "StableDeployed",
        f"first version {target.version} goes straight to stable ({target.model_uri})",
    )
    w.tag(target.version, "deployed")


def start_canary(w: Work, target: Resolution) -> None:
    """A new canary (or a new target replacing the running one) starts at step 0 with a clean slate:
    no analysis result of an earlier canary, even of the same version, is about this one."""
    old = w.status.canary
    if old is not None:
        w.event(
            "Normal",
            "CanaryRestarted",
            f"new target version {target.version} replaces canary {old.version}; restarting at step 0",
        )
        w.tag(old.version, "superseded")
    w.update(
        canary=new_track(w, target),
        weight=0,
        current_step_index=0,
        step_started_at=w.obs.now,
        canary_started_at=w.obs.now,
        canary_not_ready_since=None,
        last_analysis=None,
        abandoned=None,
    )
    w.event("Normal", "CanaryStarted", f"version {target.version} starts as canary ({target.model_uri})")


def drop_canary(w: Work) -> None:
    """No canary any more. status.lastAnalysis stays (it says why the canary was promoted or rolled
    back); it names its canary revision, and the next canary starts by clearing it."""
    w.update(
        canary=None,
        weight=0,
        current_step_index=None,
        step_started_at=None,
        canary_started_at=None,
        canary_not_ready_since=None,
    )


def rollback(w: Work, reason: str, message: str) -> None:
    """The canary is abandoned (not retried until the target changes); stable takes all traffic
    once its pods are Ready (desired.py keeps the canary serving until then). Aliases never move."""
    canary = w.status.canary
    if canary is None:
        return
    drop_canary(w)
    w.update(abandoned=Abandoned(canary.version, reason, message, canary.serving_hash))
    w.phase("RolledBack", message)
    w.cond("Progressing", False, reason, message)
    w.event("Warning", "RolledBack", f"{reason}: {message}")
    w.tag(canary.version, "rolled_back")


def _retire(w: Work, history: list[HistoryEntry]) -> None:
    """Put the current stable at the head of `history` (it stays as a 0-replica Deployment)."""
    stable = w.status.stable
    if stable is not None:
        revision = max((h.revision for h in w.status.history), default=0) + 1
        history.insert(0, HistoryEntry.retire(stable, revision, w.obs.now))


def promote(w: Work, how: str) -> None:
    canary = w.status.canary
    if canary is None:
        return
    history = list(w.status.history)
    _retire(w, history)
    history = [h for h in history if h.deployment != canary.deployment][: w.spec.history_limit]
    w.update(stable=canary, history=tuple(history))
    drop_canary(w)
    w.event("Normal", "Promoted", f"version {canary.version} promoted to stable ({how})")
    w.tag(canary.version, "deployed")
    if w.spec.promote_alias is not None:
        # Moved by the applier, which announces AliasMoved or AliasMoveFailed; pending until then.
        w.update(pending_alias=AliasMove(w.spec.promote_alias, canary.version))


def undo(w: Work, version: str) -> None:
    """Restore a kept revision as stable (its Deployment still exists at 0 replicas)."""
    st = w.status
    entry = next((h for h in st.history if h.version == version), None)
    if st.stable is not None and st.stable.version == version:
        w.event("Normal", "UndoNoop", f"version {version} is already stable")
        if st.canary:
            rollback(w, "Undone", f"undo to stable version {version}")
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
        rollback(w, "Undone", f"undo to version {version} replaced canary {st.canary.version}")
    history = [h for h in w.status.history if h.deployment != entry.deployment]
    _retire(w, history)
    w.update(stable=entry.track(), history=tuple(history[: w.spec.history_limit]), abandoned=None)
    w.event("Normal", "Undone", f"version {version} restored from history (its Deployment was kept)")
    w.tag(version, "deployed")

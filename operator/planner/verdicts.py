"""Canary analysis results are observations; this module decides what becomes of them: which run is
recorded in status.lastAnalysis (only one about the current canary revision, taken since it
started), which Events announce it (a verdict change), and the AnalysisValid condition for a spec
that cannot be used (one condition and one Event, not a Warning on every reconcile)."""

from __future__ import annotations

from mlrollout.operator.model import AnalysisInvalid, AnalysisResult
from mlrollout.operator.planner.work import Work


def record(w: Work) -> None:
    """Fold this reconcile's analysis observation into status (call before any decision)."""
    seen = w.obs.analysis
    if w.spec.analysis is None:
        return
    if isinstance(seen, AnalysisInvalid):
        before = w.status.condition("AnalysisValid")
        if before is None or before.status != "False" or before.message != seen.message:
            w.event("Warning", "AnalysisInvalid", seen.message)
        w.cond("AnalysisValid", False, "InvalidAnalysisSpec", seen.message)
        return
    w.cond("AnalysisValid", True, "Valid", "spec.rollout.analysis is usable")
    canary = w.status.canary
    if seen is None or canary is None or not seen.belongs_to(canary, w.status.canary_started_at):
        return  # nothing ran, or the run is about a canary that is no longer this one
    w.update(last_analysis=seen)
    if seen.verdict_changed:
        w.event(
            "Normal" if seen.verdict == "Passed" else "Warning",
            f"Analysis{seen.verdict}",
            f"canary {canary.version}: {seen.message}",
        )


def latest(w: Work) -> AnalysisResult | None:
    """The latest analysis of the current canary revision, or None (never one of an earlier canary)."""
    result = w.status.last_analysis
    if result is None or not result.belongs_to(w.status.canary, w.status.canary_started_at):
        return None
    return result


def invalid(w: Work) -> str | None:
    """Why the analysis spec is unusable, or None."""
    return w.obs.analysis.message if isinstance(w.obs.analysis, AnalysisInvalid) else None

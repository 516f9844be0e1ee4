"""Canary analysis in the running operator: one kopf daemon per ModelDeployment.

While a ModelDeployment has a canary and `spec.rollout.analysis`, the daemon judges the canary every
`analysis.interval` against `analysis.prometheus.address` (mlrollout.operator.analysis does the
querying and judging), then:
- writes the outcome to `status.lastAnalysis` (verdict, action, message, and value, threshold,
  samples and verdict per metric, plus the consecutive-failure state the next run continues from);
- records the operator's own analysis metrics;
- posts an Event whenever the verdict changes;
- wakes the rollout loop of the same ModelDeployment, so the planner, which reads lastAnalysis as an
  observed input (model.AnalysisResult), acts on a new verdict at once instead of at its next resync.

Deciding what to analyse is pure (`assignment`, `seconds_until_due`); the daemon only does the I/O.
The failure count lives in status, not here, so a restarted operator or its peer keeps counting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException
from mlrollout.operator import handlers
from mlrollout.operator.analysis import (
    AnalysisOutcome,
    AnalysisSpec,
    AnalysisSpecError,
    AnalysisState,
    AnalysisTarget,
    MetricKind,
    PrometheusClient,
    analyze,
)
from mlrollout.operator.analysis.metrics import AnalysisMetrics
from mlrollout.operator.spec import GROUP, PLURAL, VERSION

log = logging.getLogger("mlrollout.operator.analysis")

# A canary is judged only while a rollout is under way; after promotion or rollback there is none.
ACTIVE_PHASES = frozenset({"Progressing", "Paused"})
IDLE_SECONDS = 5.0  # how often to look again when there is nothing to analyse
RETRY_SECONDS = 2.0  # after a Kubernetes API error while writing status


@dataclass(frozen=True)
class Assignment:
    """What one analysis run judges, and the state it continues from."""

    spec: AnalysisSpec
    target: AnalysisTarget
    state: AnalysisState


def assignment(
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    *,
    default_prometheus: str | None = None,
) -> Assignment | None:
    """The analysis to run for this ModelDeployment now, or None when there is nothing to judge.

    Raises AnalysisSpecError (naming the field) when spec.rollout.analysis is invalid."""
    raw = (spec.get("rollout") or {}).get("analysis")
    status = status or {}
    canary = status.get("canary") or {}
    if not raw or not canary.get("version") or status.get("phase") not in ACTIVE_PHASES:
        return None
    analysis = AnalysisSpec.from_dict(raw, default_prometheus=default_prometheus)
    canary_version = str(canary["version"])
    stable_version = (status.get("stable") or {}).get("version")
    try:
        state = AnalysisState.from_status(status.get("lastAnalysis"), canary_version)
    except ValueError as exc:
        # A hand-edited or foreign lastAnalysis must not wedge the rollout: count afresh.
        log.warning("%s/%s: ignoring status.lastAnalysis: %s", namespace, name, exc)
        state = AnalysisState()
    return Assignment(
        spec=analysis,
        target=AnalysisTarget(
            namespace=namespace,
            model_deployment=name,
            canary_version=canary_version,
            stable_version=None if stable_version is None else str(stable_version),
        ),
        state=state,
    )


def seconds_until_due(job: Assignment, now: datetime) -> float:
    due = job.state.next_due(job.spec.interval_seconds)
    return 0.0 if due is None else max(0.0, (due - now).total_seconds())


def status_patch(job: Assignment, outcome: AnalysisOutcome) -> dict[str, Any]:
    """status.lastAnalysis for a merge patch: metrics no longer measured are removed explicitly."""
    record = outcome.to_status(job.target.canary_version or "")
    measured = record["metrics"]
    record["metrics"] = {kind.value: measured.get(kind.value) for kind in MetricKind}
    return {"lastAnalysis": record}


class _Metrics:
    """The operator's analysis metrics, created once per process on first use."""

    instance: AnalysisMetrics | None = None

    @classmethod
    def get(cls) -> AnalysisMetrics:
        if cls.instance is None:
            cls.instance = AnalysisMetrics()
        return cls.instance


async def run_once(job: Assignment, now: datetime) -> AnalysisOutcome:
    """Query Prometheus and judge; Prometheus trouble comes back as an Inconclusive outcome."""
    spec = job.spec
    async with PrometheusClient(spec.prometheus_address, timeout_seconds=spec.timeout_seconds) as client:
        return await analyze(client, spec, job.target, job.state, now=now)


def _wake_rollout(namespace: str, name: str) -> None:
    """Let the planner see the new verdict now (its loop otherwise sleeps until its next resync)."""
    st = handlers.runtime().objects.get((namespace, name))
    if st is not None:
        st.next_delay = 0.0
        st.wake.set()


@kopf.daemon(GROUP, VERSION, PLURAL, id="canary-analysis", cancellation_timeout=5.0)
async def canary_analysis(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """Judge the canary every analysis interval while one is being rolled out (body is kept current
    by kopf, so spec and status changes are seen on the next turn)."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    default_prometheus = os.environ.get("MLROLLOUT_PROMETHEUS_ADDRESS")
    spec_error = ""
    try:
        while not stopped:
            try:
                job = assignment(
                    namespace,
                    name,
                    body.get("spec") or {},
                    body.get("status"),
                    default_prometheus=default_prometheus,
                )
            except AnalysisSpecError as exc:
                if str(exc) != spec_error:
                    spec_error = str(exc)
                    kopf.event(body, type="Warning", reason="InvalidAnalysis", message=spec_error[:1024])
                await stopped.wait(IDLE_SECONDS)
                continue
            spec_error = ""
            if job is None:
                await stopped.wait(IDLE_SECONDS)
                continue
            wait = seconds_until_due(job, datetime.now(UTC))
            if wait > 0:
                await stopped.wait(min(wait, IDLE_SECONDS))
                continue
            outcome = await run_once(job, datetime.now(UTC))
            if stopped:
                break
            try:
                await handlers.runtime().kube.patch_status(namespace, name, status_patch(job, outcome))
            except (ApiException, OSError) as exc:
                logger.warning("writing status.lastAnalysis failed, retrying: %s", exc)
                await stopped.wait(RETRY_SECONDS)
                continue
            _Metrics.get().record(job.target, outcome)
            if outcome.verdict_changed:
                kind, reason, message = outcome.event()
                kopf.event(body, type=kind, reason=reason, message=message[:1024])
            logger.info(
                "analysis of canary %s: %s -> %s (%s)",
                job.target.canary_version,
                outcome.verdict.value,
                outcome.action.value,
                outcome.reason,
            )
            _wake_rollout(namespace, name)
            await stopped.wait(job.spec.interval_seconds)
    finally:
        if stopped:
            _Metrics.get().forget(namespace, name)

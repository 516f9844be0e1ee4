"""One ModelDeployment as the plugin shows it (pure): the object, its serving Deployments and pods,
and its Events, folded into a `Snapshot` every view renders and `-o json|yaml` prints.

Revisions are the serving Deployments (one per model version + pod template), in the order a user
reads them: stable, canary, then kept revisions newest first, then anything still draining.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from typing import Any, Literal

from mlrollout.operator.model import Condition, Status, fmt_time, parse_time

LABEL_VERSION = "mlrollout.io/version"
LABEL_REVISION = "mlrollout.io/revision"
LABEL_TRACK = "mlrollout.io/track"
Outcome = Literal["promoted", "failed"]


@dataclass(frozen=True)
class Pod:
    name: str
    status: str  # like kubectl's STATUS column: Running, Pending, ContainerCreating, CrashLoopBackOff...
    ready: int  # containers Ready
    containers: int
    restarts: int
    created: datetime | None


@dataclass(frozen=True)
class Revision:
    deployment: str
    version: str
    track: str  # stable | canary | retired | draining (observed, no longer in status)
    replicas: int  # spec.replicas of the Deployment (0 when not created yet)
    ready: int
    template: str = ""  # the pod-template hash (mlrollout.io/revision)
    history_revision: int | None = None  # a kept revision's number (kubectl mlrollout undo --to-revision)
    model_uri: str = ""
    gate: float | None = None
    created: datetime | None = None
    pods: tuple[Pod, ...] = ()

    @property
    def restarts(self) -> int:
        return sum(p.restarts for p in self.pods)


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None
    threshold: float | None
    direction: str  # <= or >=
    samples: int
    verdict: str
    reason: str = ""


@dataclass(frozen=True)
class Analysis:
    verdict: str
    action: str
    canary_version: str
    evaluated_at: datetime | None
    message: str
    consecutive_failures: int
    metrics: tuple[Metric, ...]


@dataclass(frozen=True)
class EventLine:
    at: datetime | None
    type: str
    reason: str
    message: str
    count: int = 1


@dataclass(frozen=True)
class Snapshot:
    name: str
    namespace: str
    model: str
    target: str  # what spec.model asks for: "version 3" or "alias champion"
    generation: int
    observed_generation: int | None
    phase: str
    message: str
    pause_reason: str | None
    paused: bool
    weight: int
    step: str  # "2/3 analysis", "done" or "-"
    route: str | None  # the router's object and what it carries (gatewayAPI)
    header_route: str | None
    revisions: tuple[Revision, ...]
    analysis: Analysis | None
    conditions: tuple[Condition, ...]
    events: tuple[EventLine, ...]
    outcome: Outcome | None  # decided for the current generation; None while in flight

    def revision(self, track: str) -> Revision | None:
        return next((r for r in self.revisions if r.track == track), None)


def describe_step(step: Mapping[str, Any]) -> str:
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}"
    if "pause" in step:
        duration = (step.get("pause") or {}).get("duration")
        return f"pause {duration}" if duration else "pause until promoted"
    if "analysis" in step:
        return "analysis"
    if "setHeaderRoute" in step:
        return "setHeaderRoute"
    if "shadow" in step:
        return "shadow"
    return next(iter(step), "?")


def outcome_of(md: Mapping[str, Any]) -> tuple[Outcome, str, str] | None:
    """(outcome, reason, message) once the operator has decided the current generation's rollout,
    from the Promoted condition (planner/outcome.py); None while in flight or not yet observed."""
    generation = int((md.get("metadata") or {}).get("generation") or 0)
    raw = md.get("status") or {}
    observed = raw.get("observedGeneration")
    if not isinstance(observed, int) or observed < generation:
        return None
    st = Status.from_dict(raw)
    promoted = st.condition("Promoted")
    if promoted is None:  # an operator older than these conditions: the phase alone
        if st.phase == "Promoted" and st.canary is None:
            return "promoted", st.phase, st.message
        if st.phase in ("RolledBack", "Rejected", "Degraded"):
            return "failed", st.phase, st.message
        return None
    if promoted.status == "True":
        return "promoted", promoted.reason, promoted.message
    if promoted.status == "False":
        return "failed", promoted.reason, promoted.message
    return None


def _pod(raw: Mapping[str, Any]) -> Pod:
    meta, status = raw.get("metadata") or {}, raw.get("status") or {}
    statuses = status.get("containerStatuses") or []
    shown = str(status.get("phase") or "Unknown")
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if waiting.get("reason"):
            shown = str(waiting["reason"])
        elif terminated.get("reason"):
            shown = str(terminated["reason"])
    if meta.get("deletionTimestamp"):
        shown = "Terminating"
    containers = len((raw.get("spec") or {}).get("containers") or []) or len(statuses)
    return Pod(
        name=str(meta.get("name", "")),
        status=shown,
        ready=sum(1 for cs in statuses if cs.get("ready")),
        containers=containers,
        restarts=sum(int(cs.get("restartCount") or 0) for cs in statuses),
        created=parse_time(meta.get("creationTimestamp")),
    )


def _key(labels: Mapping[str, Any]) -> tuple[str, str]:
    return str(labels.get(LABEL_VERSION, "")), str(labels.get(LABEL_REVISION, ""))


def _revisions(
    st: Status, deployments: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> tuple[Revision, ...]:
    by_key: dict[tuple[str, str], list[Pod]] = {}
    for raw in pods:
        by_key.setdefault(_key((raw.get("metadata") or {}).get("labels") or {}), []).append(_pod(raw))
    observed = {str((d.get("metadata") or {}).get("name", "")): d for d in deployments}
    known: list[tuple[str, str, str, int | None, float | None]] = []  # deployment, track, uri, rev, gate
    if st.stable:
        known.append((st.stable.deployment, "stable", st.stable.model_uri, None, st.stable.gate_value))
    if st.canary:
        known.append((st.canary.deployment, "canary", st.canary.model_uri, None, st.canary.gate_value))
    for h in st.history:
        known.append((h.deployment, "retired", h.model_uri, h.revision, h.gate_value))
    seen: set[str] = set()
    out: list[Revision] = []
    for name, track, uri, number, gate in [
        *known,
        *((n, "draining", "", None, None) for n in sorted(observed)),
    ]:
        if name in seen or (track == "draining" and name not in observed):
            continue
        seen.add(name)
        raw = observed.get(name) or {}
        meta = raw.get("metadata") or {}
        labels = meta.get("labels") or {}
        version, template = _key(labels)
        if not version:  # in status, not created yet: the version is in the Deployment name
            track_of = {"stable": st.stable, "canary": st.canary}.get(track)
            version = (
                track_of.version
                if track_of
                else next((h.version for h in st.history if h.deployment == name), "")
            )
        out.append(
            Revision(
                deployment=name,
                version=version,
                track=track,
                replicas=int((raw.get("spec") or {}).get("replicas") or 0),
                ready=int((raw.get("status") or {}).get("readyReplicas") or 0),
                template=template,
                history_revision=number,
                model_uri=uri,
                gate=gate,
                created=parse_time(meta.get("creationTimestamp")),
                pods=tuple(sorted(by_key.get((version, template), []), key=lambda p: p.name)) if raw else (),
            )
        )
    return tuple(out)


def _analysis(raw: Mapping[str, Any] | None) -> Analysis | None:
    if not raw or not raw.get("verdict"):
        return None
    metrics = tuple(
        Metric(
            name=str(name),
            value=m.get("value"),
            threshold=m.get("threshold"),
            direction=str(m.get("direction") or ""),
            samples=int(m.get("samples") or 0),
            verdict=str(m.get("verdict") or ""),
            reason=str(m.get("reason") or ""),
        )
        for name, m in sorted((raw.get("metrics") or {}).items())
        if isinstance(m, Mapping)
    )
    return Analysis(
        verdict=str(raw["verdict"]),
        action=str(raw.get("action") or "-"),
        canary_version=str(raw.get("canaryVersion") or ""),
        evaluated_at=parse_time(raw.get("evaluatedAt")),
        message=str(raw.get("message") or ""),
        consecutive_failures=int(raw.get("consecutiveFailures") or 0),
        metrics=metrics,
    )


def _event(raw: Mapping[str, Any]) -> EventLine:
    at = raw.get("lastTimestamp") or raw.get("eventTime") or raw.get("firstTimestamp")
    at = at or (raw.get("metadata") or {}).get("creationTimestamp")
    return EventLine(
        at=parse_time(at),
        type=str(raw.get("type") or ""),
        reason=str(raw.get("reason") or ""),
        message=str(raw.get("message") or ""),
        count=int(raw.get("count") or 1),
    )


def _event_order(raw: Mapping[str, Any]) -> tuple[str, int]:
    """Oldest first; within one second (event times have no finer grain) in the order the API server
    stored them (resourceVersion, an etcd revision: opaque by contract, increasing in practice)."""
    rv = str((raw.get("metadata") or {}).get("resourceVersion") or "0")
    return fmt_time(_event(raw).at) or "", int(rv) if rv.isdigit() else 0


def snapshot(
    md: Mapping[str, Any],
    deployments: Sequence[Mapping[str, Any]] = (),
    pods: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Mapping[str, Any]] = (),
) -> Snapshot:
    meta = md.get("metadata") or {}
    spec = md.get("spec") or {}
    raw_status = md.get("status") or {}
    st = Status.from_dict(raw_status)
    model = spec.get("model") or {}
    target = f"alias {model['alias']}" if model.get("alias") else f"version {model.get('version', '?')}"
    steps = (spec.get("rollout") or {}).get("steps") or []
    index = st.current_step_index
    if st.canary is None or index is None:
        step = "-"
    elif index >= len(steps):
        step = "done"
    else:
        step = f"{index + 1}/{len(steps)} {describe_step(steps[index])}"
    route = None
    if st.route is not None:
        r = st.route
        carried = f"{r.weight}%" if r.weight is not None else "-"
        served = "served" if r.ready else f"not served ({r.reason}: {r.message})"
        if r.kind == "Ingress":  # nginx router: the weight is on its own canary Ingress
            canary = f"{meta.get('name', '')}-canary"
            route = f"Ingress {r.name} + canary Ingress {canary}: canary-weight {carried}, {served}"
        else:
            route = f"{r.kind} {r.name}: canary weight in the route {carried}, {served}"
    header = None
    if st.header_route:
        rule = " and ".join(f"{h.name} {h.type} {h.value!r}" for h in st.header_route)
        header = f"requests with {rule} go to the canary"
    decided = outcome_of(md)
    return Snapshot(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        model=str(model.get("name", "")),
        target=target,
        generation=int(meta.get("generation") or 0),
        observed_generation=st.observed_generation,
        phase=st.phase if raw_status else "Pending",
        message=st.message,
        pause_reason=st.pause_reason,
        paused=bool(spec.get("paused")),
        weight=st.weight,
        step=step,
        route=route,
        header_route=header,
        revisions=_revisions(st, deployments, pods),
        analysis=_analysis(raw_status.get("lastAnalysis")),
        conditions=st.conditions,
        events=tuple(_event(e) for e in sorted(events, key=_event_order)),
        outcome=decided[0] if decided else None,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def to_data(value: Any) -> Any:
    """A snapshot (or any part of it) as plain JSON/YAML data: camelCase keys, RFC 3339 times."""
    if isinstance(value, datetime):
        return fmt_time(value)
    if is_dataclass(value) and not isinstance(value, type):
        data = {_camel(f.name): to_data(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, Revision):
            data["restarts"] = value.restarts
        return data
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    return value

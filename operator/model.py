"""Status and observation types shared by the planner, the applier and the plugin.

Status round-trips through the `.status` dict (camelCase, RFC 3339 times) so the planner works on
typed values and the applier can compare old and new status to write only changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

Phase = Literal["Pending", "Rejected", "Progressing", "Paused", "Promoted", "RolledBack", "Degraded"]
Verdict = Literal["Passed", "Failed", "Inconclusive"]
# Why a rollout is Paused (status.pauseReason): the planner branches on this, never on messages.
PauseReason = Literal["User", "PauseStep", "AnalysisInconclusive", "AnalysisInvalid"]
PAUSE_REASONS: tuple[PauseReason, ...] = ("User", "PauseStep", "AnalysisInconclusive", "AnalysisInvalid")


def fmt_time(t: datetime | None) -> str | None:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class Track:
    """One served model version and the Deployment that serves it."""

    version: str
    model_uri: str
    deployment: str
    run_id: str | None = None
    gate_value: float | None = None
    serving_hash: str = ""  # the pod template this Deployment was created with

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "version": self.version,
                "modelUri": self.model_uri,
                "deployment": self.deployment,
                "runId": self.run_id,
                "gateValue": self.gate_value,
                "servingHash": self.serving_hash or None,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Track | None:
        if not d or not d.get("version"):
            return None
        return cls(
            version=str(d["version"]),
            model_uri=str(d.get("modelUri", "")),
            deployment=str(d.get("deployment", "")),
            run_id=d.get("runId"),
            gate_value=d.get("gateValue"),
            serving_hash=str(d.get("servingHash") or ""),
        )


@dataclass(frozen=True)
class HistoryEntry:
    revision: int
    version: str
    model_uri: str
    deployment: str
    gate_value: float | None = None
    promoted_at: datetime | None = None  # when it stopped being stable
    serving_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "revision": self.revision,
                "version": self.version,
                "modelUri": self.model_uri,
                "deployment": self.deployment,
                "gateValue": self.gate_value,
                "promotedAt": fmt_time(self.promoted_at),
                "servingHash": self.serving_hash or None,
            }
        )

    @classmethod
    def retire(cls, track: Track, revision: int, at: datetime) -> HistoryEntry:
        return cls(
            revision=revision,
            version=track.version,
            model_uri=track.model_uri,
            deployment=track.deployment,
            gate_value=track.gate_value,
            promoted_at=at,
            serving_hash=track.serving_hash,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            revision=int(d.get("revision", 0)),
            version=str(d.get("version", "")),
            model_uri=str(d.get("modelUri", "")),
            deployment=str(d.get("deployment", "")),
            gate_value=d.get("gateValue"),
            promoted_at=parse_time(d.get("promotedAt")),
            serving_hash=str(d.get("servingHash") or ""),
        )

    def track(self) -> Track:
        return Track(
            version=self.version,
            model_uri=self.model_uri,
            deployment=self.deployment,
            gate_value=self.gate_value,
            serving_hash=self.serving_hash,
        )


@dataclass(frozen=True)
class Resolution:
    """A registry answer: spec.model resolved to an exact version and its immutable artifact URI."""

    version: str
    model_uri: str
    run_id: str | None
    gate_value: float | None  # None: the source run has no such metric
    request: str = ""  # the spec.model request this answers (ModelRef.request)
    at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "version": self.version,
                "modelUri": self.model_uri,
                "runId": self.run_id,
                "gateValue": self.gate_value,
                "request": self.request,
                "at": fmt_time(self.at),
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Resolution | None:
        if not d or not d.get("version"):
            return None
        return cls(
            version=str(d["version"]),
            model_uri=str(d.get("modelUri", "")),
            run_id=d.get("runId"),
            gate_value=d.get("gateValue"),
            request=str(d.get("request", "")),
            at=parse_time(d.get("at")),
        )


@dataclass(frozen=True)
class RegistryFailure:
    """The registry could not answer. Temporary: retry later. Permanent: the spec names nothing real."""

    temporary: bool
    reason: str  # CamelCase, e.g. RegistryUnreachable, ModelVersionNotFound
    message: str


@dataclass(frozen=True)
class Abandoned:
    """A version that was rejected or rolled back; it is not retried until the target changes."""

    version: str
    reason: str
    message: str
    serving_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "version": self.version,
                "reason": self.reason,
                "message": self.message,
                "servingHash": self.serving_hash or None,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Abandoned | None:
        if not d or not d.get("version"):
            return None
        return cls(
            version=str(d["version"]),
            reason=str(d.get("reason", "")),
            message=str(d.get("message", "")),
            serving_hash=str(d.get("servingHash") or ""),
        )


@dataclass(frozen=True)
class Condition:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "type": self.type,
                "status": self.status,
                "reason": self.reason,
                "message": self.message,
                "lastTransitionTime": fmt_time(self.last_transition_time),
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Condition:
        status = d.get("status", "Unknown")
        return cls(
            type=str(d.get("type", "")),
            status=status if status in ("True", "False") else "Unknown",
            reason=str(d.get("reason", "")),
            message=str(d.get("message", "")),
            last_transition_time=parse_time(d.get("lastTransitionTime")),
        )


@dataclass(frozen=True)
class AnalysisResult:
    """One canary analysis run (status.lastAnalysis). It belongs to one canary revision (version +
    pod template) and counts only when taken after that canary started: `belongs_to`."""

    verdict: Verdict
    canary_version: str
    evaluated_at: datetime
    message: str = ""
    action: str | None = None  # Proceed | Hold | Rollback (the analysis' own failureLimit bookkeeping)
    canary_revision: str = ""  # the canary's pod-template hash (Track.serving_hash)
    record: Mapping[str, Any] = field(default_factory=dict)  # the whole status.lastAnalysis object
    verdict_changed: bool = False  # a fresh run whose verdict differs from the previous run's

    @property
    def wants_rollback(self) -> bool:
        return self.action == "Rollback" or (self.action is None and self.verdict == "Failed")

    def belongs_to(self, canary: Track | None, since: datetime | None) -> bool:
        """About this canary revision, and taken since it started (None: no start time known)."""
        return (
            canary is not None
            and self.canary_version == canary.version
            and self.canary_revision == canary.serving_hash
            and (since is None or self.evaluated_at >= since)
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as read or made by the analysis (its measurements included)."""
        base = {
            "canaryVersion": self.canary_version,
            "canaryRevision": self.canary_revision or None,
            "verdict": self.verdict,
            "evaluatedAt": fmt_time(self.evaluated_at),
            "message": self.message,
            "action": self.action,
        }
        return {**base, **self.record}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AnalysisResult | None:
        if not d:
            return None
        verdict = d.get("verdict")
        at = parse_time(d.get("evaluatedAt"))
        if verdict not in ("Passed", "Failed", "Inconclusive") or at is None:
            return None
        return cls(
            verdict=verdict,
            canary_version=str(d.get("canaryVersion", "")),
            evaluated_at=at,
            message=str(d.get("message", "")),
            action=str(d["action"]) if d.get("action") else None,
            canary_revision=str(d.get("canaryRevision") or ""),
            record=dict(d),
        )


@dataclass(frozen=True)
class AnalysisInvalid:
    """spec.rollout.analysis cannot be used (the message names the field): a condition, not a loop."""

    message: str


@dataclass(frozen=True)
class HeaderMatch:
    """One HTTP header condition of a setHeaderRoute step (Gateway API HTTPHeaderMatch)."""

    name: str
    value: str
    type: Literal["Exact", "RegularExpression"] = "Exact"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "type": self.type}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HeaderMatch:
        regex = d.get("type") == "RegularExpression"
        return cls(str(d.get("name", "")), str(d.get("value", "")), "RegularExpression" if regex else "Exact")


@dataclass(frozen=True)
class RouteParent:
    """One Gateway's view of an HTTPRoute (its status.parents entry)."""

    gateway: str
    observed_generation: int
    accepted: bool
    resolved_refs: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class RouteObs:
    """The HTTPRoute a gatewayAPI router manages, as read from the API server."""

    name: str
    exists: bool
    generation: int = 0
    resource_version: str = ""
    rules: tuple[Mapping[str, Any], ...] = ()
    parents: tuple[RouteParent, ...] = ()


@dataclass(frozen=True)
class IngressObs:
    """One networking.k8s.io/v1 Ingress as the nginx router reads it (primary or canary)."""

    name: str
    exists: bool
    resource_version: str = ""
    ingress_class: str | None = None  # spec.ingressClassName
    annotations: Mapping[str, str] = field(default_factory=dict)
    rules: tuple[Mapping[str, Any], ...] = ()
    # status.loadBalancer.ingress (IP or hostname): set by the controller that took the Ingress
    addresses: tuple[str, ...] = ()
    owner: str | None = None  # the ModelDeployment named in its ownerReferences, if any


@dataclass(frozen=True)
class IngressPairObs:
    """The nginx router's observation: the user's primary Ingress and the operator's canary Ingress."""

    primary: IngressObs
    canary: IngressObs


# What a router with a proxy object reads back: an HTTPRoute (gatewayAPI) or Ingresses (nginx).
ProxyObs = RouteObs | IngressPairObs


@dataclass(frozen=True)
class RouteStatus:
    """status.route: the router's object and what it carries, read back from it."""

    kind: str
    name: str
    weight: int | None  # the canary's percent in the route, as read back
    ready: bool
    reason: str = ""
    message: str = ""
    # Since when the route has served what it carries now (None while it does not): pods that just
    # left the route keep running until the proxies had time to apply it (scaleDownDelaySeconds).
    served_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "weight": self.weight,
            "ready": self.ready,
            "reason": self.reason,
            "message": self.message,
            "servedAt": fmt_time(self.served_at),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RouteStatus | None:
        if not d or not d.get("name"):
            return None
        weight = d.get("weight")
        return cls(
            kind=str(d.get("kind", "")),
            name=str(d["name"]),
            weight=int(weight) if isinstance(weight, int) else None,
            ready=bool(d.get("ready")),
            reason=str(d.get("reason") or ""),
            message=str(d.get("message") or ""),
            served_at=parse_time(d.get("servedAt")),
        )


@dataclass(frozen=True)
class AliasMove:
    """Point MLflow alias `alias` at `version` (after a promotion; never on a rollback). Kept in
    status as `pendingAlias` until the registry has taken it, so a failed move is retried."""

    alias: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "version": self.version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AliasMove | None:
        if not d or not d.get("alias") or not d.get("version"):
            return None
        return cls(str(d["alias"]), str(d["version"]))


@dataclass(frozen=True)
class Status:
    phase: Phase = "Pending"
    message: str = ""
    observed_generation: int | None = None
    stable: Track | None = None
    canary: Track | None = None
    weight: int = 0
    current_step_index: int | None = None
    step_started_at: datetime | None = None
    canary_not_ready_since: datetime | None = None
    stable_not_ready_since: datetime | None = None
    last_intent_id: str | None = None
    pause_reason: PauseReason | None = None
    canary_started_at: datetime | None = None  # analysis results older than this are not about it
    last_analysis: AnalysisResult | None = None
    abandoned: Abandoned | None = None
    resolved: Resolution | None = None
    pending_alias: AliasMove | None = None
    header_route: tuple[HeaderMatch, ...] = ()  # a setHeaderRoute step's conditions, until cleared
    route: RouteStatus | None = None
    history: tuple[HistoryEntry, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def with_condition(self, cond: Condition, now: datetime) -> Status:
        """Set a condition; lastTransitionTime moves only when the status value flips."""
        old = self.condition(cond.type)
        since = old.last_transition_time if old and old.status == cond.status else now
        others = tuple(c for c in self.conditions if c.type != cond.type)
        new = replace(cond, last_transition_time=since)
        return replace(self, conditions=tuple(sorted((*others, new), key=lambda c: c.type)))

    def to_dict(self) -> dict[str, Any]:
        """The managed `.status` fields; absent values are explicit nulls so a merge patch clears them."""
        return {
            "phase": self.phase,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "stable": self.stable.to_dict() if self.stable else None,
            "canary": self.canary.to_dict() if self.canary else None,
            "weight": self.weight,
            "currentStepIndex": self.current_step_index,
            "stepStartedAt": fmt_time(self.step_started_at),
            "canaryNotReadySince": fmt_time(self.canary_not_ready_since),
            "stableNotReadySince": fmt_time(self.stable_not_ready_since),
            "lastIntentId": self.last_intent_id,
            "pauseReason": self.pause_reason,
            "canaryStartedAt": fmt_time(self.canary_started_at),
            "lastAnalysis": self.last_analysis.to_dict() if self.last_analysis else None,
            "abandoned": self.abandoned.to_dict() if self.abandoned else None,
            "resolved": self.resolved.to_dict() if self.resolved else None,
            "pendingAlias": self.pending_alias.to_dict() if self.pending_alias else None,
            "headerRoute": [h.to_dict() for h in self.header_route] or None,
            "route": self.route.to_dict() if self.route else None,
            "history": [h.to_dict() for h in self.history],
            "conditions": [c.to_dict() for c in self.conditions],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Status:
        d = d or {}
        phase = d.get("phase")
        return cls(
            phase=phase
            if phase in ("Pending", "Rejected", "Progressing", "Paused", "Promoted", "RolledBack", "Degraded")
            else "Pending",
            message=str(d.get("message") or ""),
            observed_generation=d.get("observedGeneration"),
            stable=Track.from_dict(d.get("stable")),
            canary=Track.from_dict(d.get("canary")),
            weight=int(d.get("weight") or 0),
            current_step_index=d.get("currentStepIndex"),
            step_started_at=parse_time(d.get("stepStartedAt")),
            canary_not_ready_since=parse_time(d.get("canaryNotReadySince")),
            stable_not_ready_since=parse_time(d.get("stableNotReadySince")),
            last_intent_id=d.get("lastIntentId"),
            pause_reason=_pause_reason(d.get("pauseReason")),
            canary_started_at=parse_time(d.get("canaryStartedAt")),
            last_analysis=AnalysisResult.from_dict(d.get("lastAnalysis")),
            abandoned=Abandoned.from_dict(d.get("abandoned")),
            resolved=Resolution.from_dict(d.get("resolved")),
            pending_alias=AliasMove.from_dict(d.get("pendingAlias")),
            header_route=tuple(HeaderMatch.from_dict(h) for h in d.get("headerRoute") or []),
            route=RouteStatus.from_dict(d.get("route")),
            history=tuple(HistoryEntry.from_dict(h) for h in d.get("history") or []),
            conditions=tuple(Condition.from_dict(c) for c in d.get("conditions") or []),
        )


def _pause_reason(value: Any) -> PauseReason | None:
    return next((r for r in PAUSE_REASONS if r == value), None)


@dataclass(frozen=True)
class DeploymentObs:
    """What the cluster says about one serving Deployment the operator owns."""

    name: str
    version: str
    replicas: int  # spec.replicas
    ready_replicas: int  # its Ready pods, counted from the pods (kube.children_obs)
    track: str = ""  # the Deployment's mlrollout.io/track label
    uid: str = ""
    crash_looping: bool = False  # a pod in CrashLoopBackOff or restarting repeatedly
    unschedulable: bool = False  # a pod the scheduler cannot place
    revision: str = ""  # the mlrollout.io/revision label
    app: str = ""  # app.kubernetes.io/name; with version and revision, its pods' selector


@dataclass(frozen=True)
class PodObs:
    """A serving pod: which revision it belongs to and the track label it carries now."""

    name: str
    version: str
    revision: str
    track: str
    shadow: str = ""  # its mlrollout.io/shadow annotation: what it mirrors (shadow steps)
    crash_looping: bool = False
    unschedulable: bool = False
    ready: bool = False  # Ready and not being deleted: it counts toward its revision's Ready pods
    app: str = ""  # app.kubernetes.io/name: a shadow pod's differs from its canary's (same revision)


@dataclass(frozen=True)
class Observed:
    """Everything the planner may look at besides spec and status. `registry` is None when the
    applier did not ask the registry this time (see planner.needs_resolution)."""

    now: datetime
    generation: int
    deployments: Mapping[str, DeploymentObs] = field(default_factory=dict)
    registry: Resolution | RegistryFailure | None = None
    # A fresh analysis run taken this reconcile (None: none was due), or why the analysis spec is
    # unusable. The planner decides whether to record it in status.lastAnalysis and what to announce.
    analysis: AnalysisResult | AnalysisInvalid | None = None
    route: ProxyObs | None = None  # the router's proxy objects, read back (None for the replicas router)

"""What a plan is made of (Plan, DesiredDeployment, Event, Tag, AliasMove) and the scratch state one
planning pass works on. Status updates go through `Work.update`, which names each field, so a typo
or a wrong type is a mypy error instead of a silently ignored key."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, TypedDict, Unpack

from mlrollout.operator.model import (
    Abandoned,
    AliasMove,
    AnalysisResult,
    Condition,
    HeaderMatch,
    HistoryEntry,
    Observed,
    PauseReason,
    Phase,
    Resolution,
    RouteStatus,
    Status,
    Track,
)
from mlrollout.operator.routers import ProxyWrite
from mlrollout.operator.spec import Spec

TAG_STATUS = "mlrollout.status"  # MLflow model-version tag: deployed | rolled_back | rejected | superseded
WAIT_SECONDS = 5.0  # re-check while waiting on pods or analysis (watch events usually come first)

TrackRole = Literal["stable", "canary", "retired"]


@dataclass(frozen=True)
class DesiredDeployment:
    name: str
    version: str
    model_uri: str
    replicas: int
    track: TrackRole
    revision: str = ""  # pod-template hash (spec.Serving.template_hash) the Deployment was created with
    # Not wanted any more but still serving: kept at its size until the incoming pods are Ready,
    # then deleted. Never created from scratch (it has no template here).
    draining: bool = False
    # The canary version's shadow pods (shadow step): outside every user-facing Service.
    shadow: bool = False


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
    aliases: tuple[AliasMove, ...] = ()
    requeue_after: float | None = None
    route: ProxyWrite | None = None  # the router's proxy object, rewritten (gatewayAPI) or applied (nginx)


class StatusChanges(TypedDict, total=False):
    """The Status fields a planning pass may set (Work.update type-checks them)."""

    phase: Phase
    message: str
    stable: Track | None
    canary: Track | None
    weight: int
    current_step_index: int | None
    step_started_at: datetime | None
    canary_not_ready_since: datetime | None
    stable_not_ready_since: datetime | None
    last_intent_id: str | None
    pause_reason: PauseReason | None
    canary_started_at: datetime | None
    last_analysis: AnalysisResult | None
    abandoned: Abandoned | None
    resolved: Resolution | None
    pending_alias: AliasMove | None
    header_route: tuple[HeaderMatch, ...]
    route: RouteStatus | None
    history: tuple[HistoryEntry, ...]


@dataclass
class Work:
    """Mutable scratch state for one planning pass."""

    md: str
    spec: Spec
    obs: Observed
    status: Status
    events: list[Event] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    aliases: list[AliasMove] = field(default_factory=list)
    requeue: float | None = None

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def cond(self, type_: str, ok: bool | None, reason: str, message: str) -> None:
        value: Literal["True", "False", "Unknown"] = "Unknown" if ok is None else ("True" if ok else "False")
        self.status = self.status.with_condition(Condition(type_, value, reason, message), self.obs.now)

    def update(self, **changes: Unpack[StatusChanges]) -> None:
        self.status = replace(self.status, **changes)

    def wait(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def phase(self, phase: Phase, message: str, pause: PauseReason | None = None) -> None:
        """Set the phase; a Paused phase always says why (`pause`), any other phase clears it."""
        if phase == "Paused" and pause is None:
            raise ValueError("a Paused phase needs a pause reason")
        self.update(phase=phase, message=message, pause_reason=pause if phase == "Paused" else None)

    def tag(self, version: str, value: str) -> None:
        self.tags.append(Tag(version, TAG_STATUS, value))

"""The spec patches behind promote/abort/undo (pure). Intents are one-shot: each carries a fresh id
and the operator applies an id once (status.lastIntentId)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from mlrollout.operator.model import Status
from mlrollout.operator.plugin.kubectl import PluginError


def intent_patch(action: str, value: Any) -> dict[str, Any]:
    """A merge patch setting exactly one intent action (the others explicitly cleared)."""
    intent: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "promote": None, "abort": None, "undo": None}
    intent[action] = value
    return {"spec": {"intent": intent}}


def undo_target(md: Mapping[str, Any], to_version: str | None, to_revision: int | None) -> str:
    """The version to undo to: explicit, by revision, or the most recent kept one."""
    history = Status.from_dict(md.get("status")).history
    if to_version is not None:
        if not any(h.version == to_version for h in history):
            kept = ", ".join(h.version for h in history) or "none"
            raise PluginError(f"version {to_version} is not kept for undo (kept versions: {kept})")
        return to_version
    if to_revision is not None:
        for h in history:
            if h.revision == to_revision:
                return h.version
        raise PluginError(f"no revision {to_revision} in history (see `kubectl mlrollout history`)")
    if not history:
        raise PluginError("nothing to undo: no previous version is kept")
    return history[0].version


def undo_patch(version: str) -> dict[str, Any]:
    body = intent_patch("undo", {"version": version})
    body["spec"]["model"] = {"version": version, "alias": None}
    return body

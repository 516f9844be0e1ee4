"""What a stable pod mirrors, from a small JSON file the operator keeps current (a ConfigMap volume),
so entering or leaving a shadow step never restarts the pods that serve users.

    {"target": "http://churn-shadow.ml.svc:8080", "version": "8", "percent": 50,
     "timeoutMs": 1000, "tolerance": 1e-6, "recordInputs": false}

No file, an empty file or `percent: 0` means no shadow. A file that does not parse is refused with
the field it got wrong (the previous settings stay: a bad edit never turns mirroring on half-way)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class ShadowSettingsError(ValueError):
    pass


@dataclass(frozen=True)
class ShadowSettings:
    host: str
    port: int
    version: str  # the shadow's model version: the `shadow_version` label, one per rollout
    percent: float  # share of scoring requests copied, 0 < percent <= 100
    timeout_seconds: float = 1.0
    tolerance: float = 1e-6  # relative, for numeric predictions
    record_inputs: bool = False  # keep the input row of a disagreement (it may be personal data)

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> ShadowSettings | None:
        percent = _number(payload, "percent", 0.0, 0.0, 100.0)
        if percent == 0:
            return None
        target = payload.get("target")
        if not isinstance(target, str):
            raise ShadowSettingsError("target must be the shadow Service's URL, e.g. http://name:8080")
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname or url.path not in ("", "/"):
            raise ShadowSettingsError(f"target {target!r} must be http://host[:port] with no path")
        version = payload.get("version")
        if not isinstance(version, str) or not version:
            raise ShadowSettingsError("version must be the shadow's model version (a non-empty string)")
        record = payload.get("recordInputs", False)
        if not isinstance(record, bool):
            raise ShadowSettingsError("recordInputs must be true or false")
        return cls(
            host=url.hostname,
            port=url.port or 80,
            version=version,
            percent=percent,
            timeout_seconds=_number(payload, "timeoutMs", 1000.0, 1.0, 60_000.0) / 1000.0,
            tolerance=_number(payload, "tolerance", 1e-6, 0.0, 1.0),
            record_inputs=record,
        )


def _number(payload: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = payload.get(name, default)
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise ShadowSettingsError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


class SettingsFile:
    """The settings in `path`, re-read when the file changes (kubelet swaps a ConfigMap volume's
    files by renaming a symlink, so the mtime of the resolved file changes with every update)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.current: ShadowSettings | None = None
        self.error: str | None = None
        self._stamp: tuple[float, int, int] | None = None

    def refresh(self) -> ShadowSettings | None:
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self.current, self.error = None, None, None  # no file: no shadow
            return None
        stamp = (st.st_mtime, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return self.current
        self._stamp = stamp
        try:
            with open(self.path, "rb") as f:
                text = f.read().strip()
            payload = json.loads(text) if text else {}
            if not isinstance(payload, dict):
                raise ShadowSettingsError("the shadow settings must be a JSON object")
            self.current, self.error = ShadowSettings.parse(payload), None
        except (OSError, ValueError) as exc:  # json.JSONDecodeError and ShadowSettingsError too
            self.error = f"{self.path}: {exc}"
        return self.current

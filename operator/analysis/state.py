"""The small memory analysis needs between runs, carried in the ModelDeployment's status.lastAnalysis.

Keeping it in status (not in operator memory) means a restarted operator, or the other peer after a
failover, continues the same failure count instead of starting over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .measurement import Verdict


@dataclass(frozen=True)
class AnalysisState:
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    runs: int = 0
    last_verdict: Verdict | None = None
    last_run_at: datetime | None = None  # timezone-aware

    def is_due(self, now: datetime, interval_seconds: float) -> bool:
        """Whether the next run should happen at `now` (first run: always)."""
        due = self.next_due(interval_seconds)
        return due is None or now >= due

    def next_due(self, interval_seconds: float) -> datetime | None:
        return None if self.last_run_at is None else self.last_run_at + timedelta(seconds=interval_seconds)

    def to_status(self) -> dict[str, Any]:
        """The bookkeeping fields of status.lastAnalysis (AnalysisOutcome.to_status adds the rest)."""
        return {
            "consecutiveFailures": self.consecutive_failures,
            "consecutiveInconclusive": self.consecutive_inconclusive,
            "runs": self.runs,
            "verdict": None if self.last_verdict is None else self.last_verdict.value,
            "evaluatedAt": None if self.last_run_at is None else format_time(self.last_run_at),
        }

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None, canary_version: str | None = None) -> AnalysisState:
        """Read status.lastAnalysis back. A record about another canary version (or none) starts a
        fresh state: a new canary never inherits its predecessor's failures. Absent fields take
        their start values; wrong types raise ValueError naming the field."""
        if not raw:
            return cls()
        if not isinstance(raw, Mapping):
            raise ValueError(f"status.lastAnalysis must be an object, got {type(raw).__name__}")
        if canary_version is not None and str(raw.get("canaryVersion")) != canary_version:
            return cls()

        def count(key: str) -> int:
            value = raw.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"status.lastAnalysis.{key} must be an integer >= 0, got {value!r}")
            return value

        verdict_raw = raw.get("verdict")
        try:
            verdict = None if verdict_raw is None else Verdict(verdict_raw)
        except ValueError:
            raise ValueError(f"status.lastAnalysis.verdict is not a verdict: {verdict_raw!r}") from None
        run_raw = raw.get("evaluatedAt")
        where = "status.lastAnalysis.evaluatedAt"
        try:
            last_run = None if run_raw is None else parse_time(str(run_raw))
        except ValueError:
            raise ValueError(f"{where} is not an ISO 8601 time: {run_raw!r}") from None
        if last_run is not None and last_run.tzinfo is None:
            raise ValueError(f"{where} needs a timezone: {run_raw!r}")
        return cls(
            consecutive_failures=count("consecutiveFailures"),
            consecutive_inconclusive=count("consecutiveInconclusive"),
            runs=count("runs"),
            last_verdict=verdict,
            last_run_at=last_run,
        )


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

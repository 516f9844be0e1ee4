"""The small memory analysis needs between runs, carried in the ModelDeployment's status.analysis.

Keeping it in status (not in operator memory) means a restarted operator, or the other peer after a
failover, continues the same failure count instead of starting over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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
        return {
            "consecutiveFailures": self.consecutive_failures,
            "consecutiveInconclusive": self.consecutive_inconclusive,
            "runs": self.runs,
            "lastVerdict": None if self.last_verdict is None else self.last_verdict.value,
            "lastRunAt": None if self.last_run_at is None else self.last_run_at.isoformat(),
        }

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None) -> AnalysisState:
        """Read status.analysis; absent fields take their start values, wrong types raise ValueError."""
        if not raw:
            return cls()
        if not isinstance(raw, Mapping):
            raise ValueError(f"status.analysis must be an object, got {type(raw).__name__}")

        def count(key: str) -> int:
            value = raw.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"status.analysis.{key} must be an integer >= 0, got {value!r}")
            return value

        verdict_raw = raw.get("lastVerdict")
        try:
            verdict = None if verdict_raw is None else Verdict(verdict_raw)
        except ValueError:
            raise ValueError(f"status.analysis.lastVerdict is not a verdict: {verdict_raw!r}") from None
        run_raw = raw.get("lastRunAt")
        try:
            last_run = None if run_raw is None else datetime.fromisoformat(str(run_raw))
        except ValueError:
            raise ValueError(f"status.analysis.lastRunAt is not an ISO 8601 time: {run_raw!r}") from None
        if last_run is not None and last_run.tzinfo is None:
            raise ValueError(f"status.analysis.lastRunAt needs a timezone: {run_raw!r}")
        return cls(
            consecutive_failures=count("consecutiveFailures"),
            consecutive_inconclusive=count("consecutiveInconclusive"),
            runs=count("runs"),
            last_verdict=verdict,
            last_run_at=last_run,
        )

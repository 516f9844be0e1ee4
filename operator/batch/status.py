"""A BatchPrediction's status from what the cluster shows (pure): its Job and the reports of its pods.

Each shard's pod ends with a report as its termination message (mlrollout-batch --report): its rows on
success, the error naming the file, line and column on failure. The status sums the rows of the
indexes the Job counts as completed (the last success of each index, so a retried index is counted
once), and takes a failure's message from the failed pod's own report before the Job's reason. Each
completed index's rows are kept in `shardRows` once read, so a finished pod deleted afterwards (by
hand, or by pod garbage collection) does not take its rows out of the total; an index whose pod went
before its report was read is named in the message rather than silently counted as 0 rows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

TERMINAL = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class ShardPod:
    index: int
    phase: str  # Pending, Running, Succeeded, Failed
    message: str  # the container's termination message ("" when none)
    exit_code: int | None = None

    @property
    def report(self) -> dict[str, Any]:
        try:
            value = json.loads(self.message) if self.message else {}
        except ValueError:
            return {"error": self.message}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class JobView:
    active: int = 0
    failed: int = 0
    completed_indexes: str = ""
    failed_indexes: str = ""
    conditions: tuple[tuple[str, str, str, str], ...] = ()  # (type, status, reason, message)
    start_time: datetime | None = None
    completion_time: datetime | None = None

    def condition(self, kind: str) -> tuple[str, str, str, str] | None:
        return next((c for c in self.conditions if c[0] == kind and c[1] == "True"), None)


@dataclass(frozen=True)
class BatchEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


def indexes(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5} (the Job's completedIndexes / failedIndexes format)."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def batch_status(
    previous: Mapping[str, Any],
    *,
    shards: int,
    job_name: str,
    job: JobView | None,
    pods: Sequence[ShardPod],
    now: datetime,
) -> tuple[dict[str, Any], list[BatchEvent]]:
    """The next status (model and message fields of `previous` kept) and the Events of the change."""
    status: dict[str, Any] = {k: v for k, v in previous.items() if k in {"model", "startTime", "job"}}
    events: list[BatchEvent] = []
    if job is None:
        status.update(
            phase="Pending", progress=f"0/{shards}", shards={"total": shards, "done": 0, "failed": 0}
        )
        status["conditions"] = _conditions(previous, now, complete=None, failed=None)
        return _with_events(previous, status, events)
    done = indexes(job.completed_indexes)
    failed_indexes = indexes(job.failed_indexes)
    shard_rows = {int(k): int(v) for k, v in (previous.get("shardRows") or {}).items() if int(k) in done}
    for index in done:
        reports = [p.report for p in pods if p.index == index and p.phase == "Succeeded"]
        if reports:
            shard_rows[index] = max(int(r.get("rows", 0)) for r in reports)
    rows = sum(shard_rows.values())
    unread = sorted(done - shard_rows.keys())
    start = job.start_time
    end = job.completion_time or now
    seconds = (end - start).total_seconds() if start else 0.0
    status.update(
        job=job_name,
        progress=f"{len(done)}/{shards}",
        shards={"total": shards, "done": len(done), "failed": len(failed_indexes), "retried": job.failed},
        rows=rows,
        rowsPerSecond=round(rows / seconds, 1) if seconds > 0 else 0.0,
    )
    if shard_rows:
        status["shardRows"] = {str(i): shard_rows[i] for i in sorted(shard_rows)}
    if start:
        status["startTime"] = start.isoformat().replace("+00:00", "Z")
    complete, failed = job.condition("Complete"), job.condition("Failed")
    if complete:
        status["phase"] = "Succeeded"
        status["completionTime"] = end.isoformat().replace("+00:00", "Z")
        uncounted = (
            f" (not counting shard(s) {unread}: their pods were deleted before their reports were read)"
            if unread
            else ""
        )
        status["message"] = (
            f"{rows} rows in {seconds:.1f} s{uncounted}; manifest.json written by the last shard"
        )
    elif failed:
        status["phase"] = "Failed"
        status["message"] = failure_message(failed, pods)
    else:
        status["phase"] = "Running" if job.active or done else "Pending"
    status["conditions"] = _conditions(
        previous,
        now,
        complete=("True", "AllShardsDone", status["message"]) if complete else None,
        failed=("True", failed[2] or "JobFailed", status["message"]) if failed else None,
    )
    previous_retries = int((previous.get("shards") or {}).get("retried", 0))
    if job.failed > previous_retries and not failed:
        lost = sorted({p.index for p in pods if p.phase == "Failed"})
        events.append(
            BatchEvent(
                "Warning", "ShardRetried", f"shard(s) {lost} failed; the Job retries each failed index"
            )
        )
    return _with_events(previous, status, events)


def failure_message(condition: tuple[str, str, str, str], pods: Sequence[ShardPod]) -> str:
    """The failed shard's own words (file, line, column) when it left a report, else the Job's."""
    for pod in sorted(pods, key=lambda p: p.index):
        error = pod.report.get("error") if pod.phase == "Failed" else None
        if error:
            return f"shard {pod.index}: {error}"
    _, _, reason, message = condition
    return f"{reason}: {message}" if message else reason


def _with_events(
    previous: Mapping[str, Any], status: dict[str, Any], events: list[BatchEvent]
) -> tuple[dict[str, Any], list[BatchEvent]]:
    phase, before = status.get("phase"), previous.get("phase")
    if phase != before:
        if phase == "Running":
            events.insert(
                0, BatchEvent("Normal", "Started", f"{status.get('progress')} shards done; Job running")
            )
        elif phase == "Succeeded":
            events.append(BatchEvent("Normal", "Succeeded", str(status.get("message"))))
        elif phase == "Failed":
            events.append(BatchEvent("Warning", "Failed", str(status.get("message"))))
    return status, events


def _conditions(
    previous: Mapping[str, Any],
    now: datetime,
    *,
    complete: tuple[str, str, str] | None,
    failed: tuple[str, str, str] | None,
) -> list[dict[str, Any]]:
    """Complete and Failed (for `kubectl wait --for=condition=Complete`), transition time kept."""
    old = {c.get("type"): c for c in previous.get("conditions") or [] if isinstance(c, Mapping)}
    out = []
    for kind, value in (("Complete", complete), ("Failed", failed)):
        state, reason, message = value or ("False", "Running" if kind == "Complete" else "NoFailure", "")
        before = old.get(kind) or {}
        stamp = before.get("lastTransitionTime") if before.get("status") == state else None
        out.append(
            {
                "type": kind,
                "status": state,
                "reason": reason,
                "message": message[:1024],
                "lastTransitionTime": stamp or now.isoformat().replace("+00:00", "Z"),
            }
        )
    return out

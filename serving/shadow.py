"""Shadow mirroring: a stable pod copies a sampled share of its scoring requests to the shadow
(canary) version's Service, off the request path, and compares the two answers.

The user's request only decides whether to copy (one random draw) and hands the copy on without
waiting: under `mlrollout-serve` to the pod's relay process as one datagram (shadow_relay.py), else to
a bounded queue of this process (`put_nowait`); either way a full hand-off drops the copy and counts
it. Sender threads (the relay's, or this process' started lazily after fork: threads do not survive
it) POST the copies with a timeout on every socket operation, so a slow, crashed or missing shadow
costs the user nothing; its failures are counted by outcome. Until the shadow has answered this
process once, a refused connection or an unknown name is `not_ready`, not a failure: the shadow pods
are Ready before kube-proxy and DNS route their Service, and the stable pods may be told to mirror in
between (those copies never reached the canary, so they say nothing about it). Each answered copy is
compared row by row (shadow_compare.py); disagreements go into a bounded, recent sample
(DisagreementLog) readable at `GET /shadow/disagreements` on any worker. Metric families and labels:
METRICS.md."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import queue
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy.typing as npt
import orjson
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.metrics import (
    IDENTITY,
    REQUEST_BUCKETS,
    SHADOW_DURATION,
    SHADOW_REQUESTS,
    SHADOW_ROWS,
    Identity,
)
from mlrollout.serving.shadow_compare import UnreadableAnswer, compare, predictions_of
from mlrollout.serving.shadow_http import ProtocolError, ShadowConnection
from mlrollout.serving.shadow_relay import Copy, RelayClient, encode
from mlrollout.serving.shadow_settings import SettingsFile, ShadowSettings
from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger("mlrollout.serving.shadow")
SHADOW_HEADER = "X-Mlrollout-Shadow"  # marks a copy: a pod never mirrors a copy again
OUTCOMES = ("answered", "http_error", "unreadable", "timeout", "unreachable", "not_ready", "dropped")
REFRESH_SECONDS = 1.0  # how often settings are re-read and the disagreement sample written out
# After this many copies in a row met a timeout or no connection, fail copies fast for a while: a dead
# shadow shows in its error rate at the copy rate (not as a few timeouts and a queue of dropped
# copies), while one slow answer stays one error instead of a second's worth of them.
BREAKER_FAILURES = 3
BREAKER_SECONDS = 1.0
MAX_SAMPLE_FILES = 16  # per pod: the live workers' samples and a few of recycled ones


class ShadowMetrics:
    """Counters of one stable pod's shadow traffic, by the shadow's version (one per rollout)."""

    def __init__(self, identity: Identity, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        reg: Any = registry if registry is not None else REGISTRY
        self._ident = identity.labels()
        self.requests = Counter(
            SHADOW_REQUESTS,
            "Copies of scoring requests for the shadow version, by outcome.",
            (*IDENTITY, "shadow_version", "outcome"),
            registry=reg,
        )
        self.rows = Counter(
            SHADOW_ROWS,
            "Rows answered by both versions, by whether the two predictions agree.",
            (*IDENTITY, "shadow_version", "result"),
            registry=reg,
        )
        self.latency = Histogram(
            SHADOW_DURATION,
            "Time the shadow version took to answer a copy (answered copies).",
            (*IDENTITY, "shadow_version"),
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )

    def outcome(self, version: str, outcome: str) -> None:
        self.requests.labels(**self._ident, shadow_version=version, outcome=outcome).inc()

    def answered(self, version: str, seconds: float, agree: int, disagree: int) -> None:
        self.outcome(version, "answered")
        self.latency.labels(**self._ident, shadow_version=version).observe(seconds)
        if agree:
            self.rows.labels(**self._ident, shadow_version=version, result="agree").inc(agree)
        if disagree:
            self.rows.labels(**self._ident, shadow_version=version, result="disagree").inc(disagree)


class DisagreementLog:
    """The most recent disagreements of this process (at most `capacity`), written to
    `directory/disagreements-<pid>.json` so that any worker can answer with every worker's."""

    def __init__(self, directory: str | None, capacity: int) -> None:
        self.directory = directory
        self.capacity = capacity
        self._recent: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._dirty = False

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._recent.append(record)
            self._dirty = True

    def flush(self) -> None:
        if self.directory is None or not self._dirty:
            return
        with self._lock:
            data, self._dirty = orjson.dumps(list(self._recent)), False
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"disagreements-{os.getpid()}.json")
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # readers see the old list or the new one, never half of one
        # Recycled workers (gunicorn max_requests) leave their files: keep the newest few only.
        files = sorted(glob.glob(os.path.join(self.directory, "disagreements-*.json")), key=_mtime)
        for old in files[:-MAX_SAMPLE_FILES]:
            with contextlib.suppress(OSError):
                os.remove(old)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """Newest first, across every worker's file (this process' memory when there is no dir)."""
        if self.directory is None:
            with self._lock:
                records = list(self._recent)
        else:
            self.flush()
            records = []
            for path in glob.glob(os.path.join(self.directory, "disagreements-*.json")):
                try:
                    with open(path, "rb") as f:
                        records.extend(orjson.loads(f.read()))
                except (OSError, orjson.JSONDecodeError):
                    continue  # a worker's file being replaced right now: the next read has it
        records.sort(key=lambda r: (r.get("time", ""), r.get("requestId", ""), r.get("row", 0)), reverse=True)
        return records[: max(0, min(limit, self.capacity))]


class ShadowDown(Exception):
    """A copy met a timeout or no connection (already counted): a step towards failing copies fast."""


class ShadowMirror:
    """Per process: the settings, a bounded queue of copies and the threads that send them."""

    def __init__(
        self,
        settings: SettingsFile,
        metrics: ShadowMetrics,
        disagreements: DisagreementLog,
        *,
        own_version: str,
        columns: Sequence[str],
        queue_size: int = 64,
        senders: int = 2,
        credential: str | None = None,
        relay: RelayClient | None = None,
    ) -> None:
        self.settings_file = settings
        self.metrics = metrics
        self.disagreements = disagreements
        self.own_version = own_version
        self.columns = tuple(columns)
        self.queue_size = queue_size
        self.senders = senders
        self._auth = f"Bearer {credential}" if credential else None
        self.relay = relay  # set: copies go to the pod's relay process, this one sends nothing
        self._pid: int | None = None
        self._queue: queue.Queue[Copy] = queue.Queue(queue_size)
        self._settings: ShadowSettings | None = None
        self._start_lock = threading.Lock()
        self._stopped = threading.Event()
        self._down_until = 0.0  # monotonic time until which copies fail fast (the shadow is down)
        self._failures = 0  # copies in a row that met a timeout or no connection
        self._routed: tuple[str, str, int] | None = None  # (version, host, port) that answered here

    # ------------------------------------------------------------------ request path
    @property
    def settings(self) -> ShadowSettings | None:
        if self._pid != os.getpid():
            self._start()
        return self._settings

    def offer(
        self,
        path: str,
        body: bytes,
        content_type: str,
        request_id: str,
        predictions: npt.NDArray[Any],
        *,
        rows: npt.NDArray[Any] | None,
    ) -> None:
        """Maybe copy one answered request. Never blocks and never raises into the request."""
        s = self.settings
        if s is None or random.random() * 100.0 >= s.percent:  # noqa: S311 - sampling, not crypto
            return
        kept = rows if s.record_inputs else None
        copy = Copy(path, body, content_type, request_id, predictions, kept, time.time())
        if self.relay is None:
            self.feed(copy)
            return
        try:
            frame = encode(copy)
        except (TypeError, ValueError):  # values JSON cannot carry (orjson.JSONEncodeError is one)
            log.warning("shadow copy of request %s dropped: its answer is not JSON-serializable", request_id)
            frame = None
        if frame is None or not self.relay.send(frame):
            self.metrics.outcome(s.version, "dropped")

    def feed(self, copy: Copy) -> None:
        """Queue a copy for this process' senders (from offer, or from the relay's socket)."""
        s = self.settings
        if s is None:
            return  # no shadow (any more): nothing to send it to
        try:
            self._queue.put_nowait(copy)
        except queue.Full:
            self.metrics.outcome(s.version, "dropped")

    # ------------------------------------------------------------------ background
    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # After fork: the parent's queue and threads are not ours (only the calling thread
            # survives a fork), so start afresh in this process.
            self._queue = queue.Queue(self.queue_size)
            self._refresh()
            threading.Thread(target=self._poll, name="shadow-settings", daemon=True).start()
            for i in range(0 if self.relay is not None else self.senders):
                threading.Thread(target=self._send_loop, name=f"shadow-sender-{i}", daemon=True).start()
            self._pid = os.getpid()

    def _refresh(self) -> None:
        was_error = self.settings_file.error
        s = self.settings_file.refresh()
        if self.settings_file.error and self.settings_file.error != was_error:
            log.warning("shadow settings refused, keeping the previous ones: %s", self.settings_file.error)
        self._settings = None if s is None or s.version == self.own_version else s

    def _poll(self) -> None:
        while not self._stopped.wait(REFRESH_SECONDS):
            try:
                self._refresh()
                self.disagreements.flush()
            except Exception:
                log.exception("shadow settings or sample could not be refreshed")

    def stop(self) -> None:
        self._stopped.set()

    def _send_loop(self) -> None:
        conn: ShadowConnection | None = None
        target: tuple[str, int, float] | None = None
        while not self._stopped.is_set():
            try:
                copy = self._queue.get(timeout=REFRESH_SECONDS)
            except queue.Empty:
                continue
            s = self._settings
            if s is None:
                continue  # shadow ended while the copy waited
            if time.monotonic() < self._down_until:
                # The shadow just failed copies in a row: fail this one fast instead of waiting out
                # a timeout per copy (see BREAKER_FAILURES); one copy a second probes.
                self.metrics.outcome(s.version, "unreachable" if self._answered(s) else "not_ready")
                continue
            if conn is None or target != (s.host, s.port, s.timeout_seconds):
                if conn is not None:
                    conn.close()
                target = (s.host, s.port, s.timeout_seconds)
                conn = ShadowConnection(s.host, s.port, timeout=s.timeout_seconds)
            try:
                if not self._send(conn, copy, s):
                    conn.close()  # a fresh connection for the next copy
                self._down_until, self._failures = 0.0, 0
            except ShadowDown:
                conn.close()
                self._failures += 1
                if self._failures >= BREAKER_FAILURES or not self._answered(s):
                    self._down_until = time.monotonic() + BREAKER_SECONDS
            except Exception:
                log.exception("shadow copy of request %s could not be compared", copy.request_id)
                conn.close()

    def _send(self, conn: ShadowConnection, copy: Copy, s: ShadowSettings) -> bool:
        """Send one copy and count its outcome; False when the connection should be dropped,
        ShadowDown when the shadow did not answer at all."""
        headers = {
            "Content-Type": copy.content_type,
            "X-Request-ID": copy.request_id,
            SHADOW_HEADER: "1",
        }
        if self._auth:
            headers["Authorization"] = self._auth
        t0 = time.perf_counter()
        try:
            response = conn.post(copy.path, copy.body, headers)
        except TimeoutError:
            self.metrics.outcome(s.version, "timeout")
            raise ShadowDown from None
        except (ConnectionRefusedError, socket.gaierror):
            # Refused by kube-proxy (a Service without routed endpoints) or an unknown name: a shadow
            # that never answered here is not routed yet; one that did has gone.
            self.metrics.outcome(s.version, "unreachable" if self._answered(s) else "not_ready")
            raise ShadowDown from None
        except (OSError, ProtocolError):
            self.metrics.outcome(s.version, "unreachable")
            raise ShadowDown from None
        seconds = time.perf_counter() - t0
        self._routed = (s.version, s.host, s.port)  # an HTTP answer: the Service routes to the shadow
        if response.status != 200:
            self.metrics.outcome(s.version, "http_error")
            return not response.will_close
        try:
            stable = copy.predictions if isinstance(copy.predictions, list) else copy.predictions.tolist()
            shadow = predictions_of(response.body, copy.path)
            verdicts = compare(stable, shadow, s.tolerance)
        except UnreadableAnswer:
            self.metrics.outcome(s.version, "unreadable")
            return not response.will_close
        disagree = verdicts.count(False)
        self.metrics.answered(s.version, seconds, len(verdicts) - disagree, disagree)
        if disagree:
            self._record(copy, s, stable, shadow, verdicts)
        return not response.will_close

    def _answered(self, s: ShadowSettings) -> bool:
        """Whether this shadow (version, at this address) has answered this process before."""
        return self._routed == (s.version, s.host, s.port)

    def _record(
        self, copy: Copy, s: ShadowSettings, stable: list[Any], shadow: list[Any], verdicts: list[bool]
    ) -> None:
        when = datetime.fromtimestamp(copy.at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for row, agreed in enumerate(verdicts):
            if agreed:
                continue
            record: dict[str, Any] = {
                "time": when,
                "requestId": copy.request_id,
                "row": row,
                "stableVersion": self.own_version,
                "stablePrediction": stable[row],
                "shadowVersion": s.version,
                "shadowPrediction": shadow[row],
            }
            if copy.rows is not None and row < len(copy.rows):
                record["input"] = dict(zip(self.columns, _cells(copy.rows[row]), strict=False))
            self.disagreements.add(record)


def build_mirror(
    config: ServingConfig,
    identity: Identity,
    columns: Sequence[str],
    credential: str | None,
    *,
    registry: CollectorRegistry | None = None,
    relay: RelayClient | None = None,
    workers: int = 1,
) -> ShadowMirror:
    """The mirror of a worker (relay set: it hands copies on) or of the relay (workers: how many
    workers' queues and senders it stands in for), from the same settings."""
    multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return ShadowMirror(
        SettingsFile(config.shadow_config or ""),
        ShadowMetrics(identity, registry),
        DisagreementLog(os.path.join(multiproc, "shadow") if multiproc else None, config.shadow_sample_size),
        own_version=identity.version,
        columns=columns,
        queue_size=config.shadow_queue * workers,
        senders=config.shadow_senders * workers,
        credential=credential,
        relay=relay,
    )


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _cells(row: list[Any] | npt.NDArray[Any]) -> list[Any]:
    """An input row as JSON values (NaN, a missing value, as null)."""
    out: list[Any] = []
    for v in row if isinstance(row, list) else row.tolist():
        out.append(None if isinstance(v, float) and math.isnan(v) else v)
    return out


def status_payload(mirror: ShadowMirror | None, limit: int) -> dict[str, Any]:
    """The body of GET /shadow/disagreements: what this pod mirrors, and the recent sample."""
    if mirror is None:
        return {"shadow": None, "disagreements": []}
    s = mirror.settings
    out: dict[str, Any] = {
        "shadow": None
        if s is None
        else {
            "target": f"http://{s.host}:{s.port}",
            "version": s.version,
            "percent": s.percent,
            "recordInputs": s.record_inputs,
        },
        "disagreements": mirror.disagreements.recent(limit),
    }
    if mirror.settings_file.error:
        out["settingsError"] = mirror.settings_file.error
    return out


def write_settings(path: str, payload: dict[str, Any]) -> None:
    """Write a settings file atomically (tests, benchmarks, a user without the operator)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)

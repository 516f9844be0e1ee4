"""Ground truth for live F1: where predictions wait for their labels, and how F1 is computed.

Feedback can land on a different gunicorn worker than the prediction it labels. Two choices make that
work: (1) the request-id -> predicted-classes table lives in an anonymous shared mapping created in the
gunicorn master before it forks (with `preload_app`), so every worker reads what any worker wrote;
it is direct-mapped (a newer id can evict an older one) with a TTL, so its memory is fixed;
(2) counts are kept as a Prometheus counter per (predicted, actual) class pair, which multiprocess mode
sums over workers, so F1 is computed from the aggregated confusion matrix, never per worker.
A client can also send the predictions with its labels, which needs no table at all."""

from __future__ import annotations

import hashlib
import mmap
import multiprocessing
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_HEADER = struct.Struct("<16sdI")  # key digest, unix time written, number of rows
_INDEX = struct.Struct("<i")


@dataclass(frozen=True)
class StoreLimits:
    slots: int = 65_536
    max_rows: int = 64  # predictions kept per request; larger requests need predictions in the feedback
    ttl_seconds: float = 3600.0


class PredictionStore:
    """Fixed-size table: request id -> class indices, shared by every process forked after creation."""

    def __init__(self, limits: StoreLimits = StoreLimits()) -> None:
        self.limits = limits
        self._slot_size = _HEADER.size + _INDEX.size * limits.max_rows
        self._map = mmap.mmap(-1, self._slot_size * limits.slots)  # MAP_SHARED | MAP_ANONYMOUS
        self._lock = multiprocessing.Lock()

    def _locate(self, request_id: str) -> tuple[bytes, int]:
        digest = hashlib.blake2b(request_id.encode(), digest_size=16).digest()
        return digest, (int.from_bytes(digest[:8], "little") % self.limits.slots) * self._slot_size

    def put(self, request_id: str, class_indices: Sequence[int], now: float | None = None) -> bool:
        """Keep a request's predicted class indices; False when the request has too many rows."""
        count = len(class_indices)
        if count > self.limits.max_rows:
            return False
        digest, offset = self._locate(request_id)
        payload = struct.pack(f"<{count}i", *class_indices)
        with self._lock:
            _HEADER.pack_into(self._map, offset, digest, time.time() if now is None else now, count)
            self._map[offset + _HEADER.size : offset + _HEADER.size + len(payload)] = payload
        return True

    def take(self, request_id: str, now: float | None = None) -> list[int] | None:
        """The stored indices (removed, so a label is counted once), or None if unknown or expired."""
        digest, offset = self._locate(request_id)
        with self._lock:
            stored, written, count = _HEADER.unpack_from(self._map, offset)
            if stored != digest:
                return None
            _HEADER.pack_into(self._map, offset, b"\0" * 16, 0.0, 0)
            indices = list(struct.unpack_from(f"<{count}i", self._map, offset + _HEADER.size))
        if (time.time() if now is None else now) - written > self.limits.ttl_seconds:
            return None
        return indices


def macro_f1(confusion: Mapping[tuple[str, str], float]) -> float | None:
    """Macro-averaged F1 over classes seen as predicted or actual; None without any labels.

    `confusion[(predicted, actual)]` is a count, e.g. summed over workers by Prometheus."""
    total = sum(confusion.values())
    if total <= 0:
        return None
    classes = {p for p, _ in confusion} | {a for _, a in confusion}
    scores = []
    for c in sorted(classes):
        tp = confusion.get((c, c), 0.0)
        fp = sum(n for (p, a), n in confusion.items() if p == c and a != c)
        fn = sum(n for (p, a), n in confusion.items() if a == c and p != c)
        denominator = 2 * tp + fp + fn
        if denominator > 0:
            scores.append(2 * tp / denominator)
    return sum(scores) / len(scores) if scores else None

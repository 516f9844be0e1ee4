"""Ground truth for live F1: where predictions wait for their labels, and how F1 is computed.

Feedback can land on a different gunicorn worker than the prediction it labels. Two choices make that
work: (1) the request-id -> predicted-classes table lives in an anonymous shared mapping created in the
gunicorn master before it forks (with `preload_app`), so every worker reads what any worker wrote;
it is direct-mapped (a newer id can evict an older one) with a TTL, so its memory is fixed;
(2) counts are kept as a Prometheus counter per (predicted, actual) class pair, which multiprocess mode
sums over workers, so F1 is computed from the aggregated confusion matrix, never per worker.
A client can also send the predictions with its labels, which needs no table at all. Through a
Service that spreads requests over several pods (and tracks), the table is not enough: see the
prediction tokens at the end of this module."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import mmap
import multiprocessing
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

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
        taken = self._take(request_id, "i", now)
        return None if taken is None else [int(v) for v in taken]

    @property
    def max_values(self) -> int:
        """Numeric predictions (float64, twice an index's size) a slot holds."""
        return self.limits.max_rows // 2

    def put_values(self, request_id: str, values: Sequence[float], now: float | None = None) -> bool:
        """Keep a regressor's predicted values (exact float64); False over `max_values` rows."""
        count = len(values)
        if count > self.max_values:
            return False
        digest, offset = self._locate(request_id)
        payload = struct.pack(f"<{count}d", *values)
        with self._lock:
            _HEADER.pack_into(self._map, offset, digest, time.time() if now is None else now, count)
            self._map[offset + _HEADER.size : offset + _HEADER.size + len(payload)] = payload
        return True

    def take_values(self, request_id: str, now: float | None = None) -> list[float] | None:
        taken = self._take(request_id, "d", now)
        return None if taken is None else [float(v) for v in taken]

    def _take(self, request_id: str, code: str, now: float | None) -> list[Any] | None:
        digest, offset = self._locate(request_id)
        with self._lock:
            stored, written, count = _HEADER.unpack_from(self._map, offset)
            if stored != digest:
                return None
            _HEADER.pack_into(self._map, offset, b"\0" * 16, 0.0, 0)
            values = list(struct.unpack_from(f"<{count}{code}", self._map, offset + _HEADER.size))
        if (time.time() if now is None else now) - written > self.limits.ttl_seconds:
            return None
        return values


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


# --------------------------------------------------------------------------- prediction tokens
# Live F1 through one Service: the Service load-balances over the pods of every track, so the
# feedback for a prediction usually reaches another pod, often of the other track and version. The
# prediction therefore carries what its feedback needs: a token in the X-Prediction-Token header,
# `v1.<payload>.<mac>`, payload = base64url(JSON {"m": model, "v": version, "r": request id,
# "p": predicted classes, "c": the version's classes[, "k": "values" for a regressor, whose "p" are
# its predicted numbers written exactly (repr of the float64)]}), mac = the first 16 bytes of
# HMAC-SHA256(key, "v1." + payload), base64url.
# Any pod that receives {"token": ..., "labels": [...]} on /feedback verifies the MAC and counts the
# labels for the token's version, whichever version it serves itself, checking them against the
# classes the token names (the predicting version's, which may differ from its own). The key is
# MLROLLOUT_FEEDBACK_KEY (the same for every pod of a model, e.g. from a Secret); without it the key
# is derived from the model name, which catches corrupted or mixed-up tokens but does not stop a
# client from forging one (no more than sending "predictions" with its labels already allows).
TOKEN_PREFIX = "v1."  # noqa: S105 (a format marker, not a secret)
VALUES = "values"
_MAC_BYTES = 16


@dataclass(frozen=True)
class PredictionToken:
    model: str
    version: str
    request_id: str
    predicted: tuple[str, ...]
    classes: tuple[str, ...] = ()  # of the version that predicted; () when it has too many to carry
    kind: str = "classes"  # or VALUES: a regressor's predicted numbers, labelled with numbers

    @property
    def regression(self) -> bool:
        return self.kind == VALUES


class InvalidToken(ValueError):
    """The token is malformed, or its MAC does not match (another key, or tampered with)."""


def token_key(model_name: str, configured: str | None) -> bytes:
    if configured:
        return configured.encode()
    return hashlib.sha256(f"mlrollout-feedback:{model_name}".encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=16)
def _keyed(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 with the key's pads already hashed: copy() per token skips that setup."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _mac(key: bytes, signed: str) -> bytes:
    mac = _keyed(key).copy()
    mac.update(signed.encode())
    return mac.digest()[:_MAC_BYTES]


def sign_token(key: bytes, token: PredictionToken) -> str:
    content: dict[str, Any] = {
        "m": token.model,
        "v": token.version,
        "r": token.request_id,
        "p": list(token.predicted),
        "c": list(token.classes),
    }
    if token.regression:
        content["k"] = VALUES
    payload = orjson.dumps(content)  # compact, like json.dumps with (",", ":") separators
    signed = TOKEN_PREFIX + _b64(payload)
    return f"{signed}.{_b64(_mac(key, signed))}"


def verify_token(key: bytes, text: str) -> PredictionToken:
    """The token's content, or InvalidToken saying why (constant-time MAC comparison)."""
    if not text.startswith(TOKEN_PREFIX) or text.count(".") != 2:
        raise InvalidToken("not a prediction token (expected v1.<payload>.<mac> from X-Prediction-Token)")
    signed, _, mac_text = text.rpartition(".")
    try:
        mac = _unb64(mac_text)
        raw = orjson.loads(_unb64(signed[len(TOKEN_PREFIX) :]))
    except (ValueError, binascii.Error):
        raise InvalidToken("prediction token is not valid base64url JSON") from None
    if not hmac.compare_digest(mac, _mac(key, signed)):
        raise InvalidToken("prediction token signature does not match (another model, key or tampered)")
    if not isinstance(raw, dict) or not isinstance(raw.get("p"), list):
        raise InvalidToken("prediction token has no predictions")
    return PredictionToken(
        model=str(raw.get("m", "")),
        version=str(raw.get("v", "")),
        request_id=str(raw.get("r", "")),
        predicted=tuple(str(p) for p in raw["p"]),
        classes=tuple(str(c) for c in raw.get("c") or ()),
        kind=VALUES if raw.get("k") == VALUES else "classes",
    )

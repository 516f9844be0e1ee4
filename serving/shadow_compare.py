"""Where two answers to the same rows meet: the stable version's and the shadow (canary) version's.

Pure: no I/O, no clock. A classifier's rows agree when both name the same label; a regressor's when
the numbers are within a relative tolerance of each other (|a - b| <= tolerance * max(|a|, |b|), so
0 and 0 agree, and a sign flip never does)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson


class UnreadableAnswer(ValueError):
    """The shadow's body does not hold one prediction per row (a 4xx/5xx body, another shape)."""


def predictions_of(body: bytes, path: str) -> list[Any]:
    """The predictions in a scoring reply: `{"predictions": [...]}` from /invocations, the first
    output's `data` from a V2 infer reply (row-major, one value per row for a 1-column output)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UnreadableAnswer("the shadow's reply is not JSON") from None
    if not isinstance(payload, dict):
        raise UnreadableAnswer("the shadow's reply is not a JSON object")
    if path == "/invocations":
        values = payload.get("predictions")
    else:
        outputs = payload.get("outputs")
        first = outputs[0] if isinstance(outputs, list) and outputs else None
        values = first.get("data") if isinstance(first, dict) else None
    if not isinstance(values, list):
        raise UnreadableAnswer("the shadow's reply has no list of predictions")
    return values


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def same(stable: Any, shadow: Any, tolerance: float) -> bool:
    """One row: numbers within the relative tolerance, anything else as the label text."""
    a, b = _number(stable), _number(shadow)
    if a is not None and b is not None:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= tolerance * max(abs(a), abs(b))
    return str(stable) == str(shadow)


def compare(stable: Sequence[Any], shadow: Sequence[Any], tolerance: float) -> list[bool]:
    """Per row, whether the two versions agree. Different row counts are an unreadable answer."""
    if len(stable) != len(shadow):
        raise UnreadableAnswer(f"the shadow answered {len(shadow)} rows for {len(stable)}")
    return [same(a, b, tolerance) for a, b in zip(stable, shadow, strict=True)]

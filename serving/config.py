"""Server settings from the environment, each checked with an error that names the variable."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlrollout.serving.feedback import StoreLimits
from mlrollout.serving.parsing import Limits

# Buckets of mlrollout_prediction_value (a regressor's predicted values): 1-2.5-5 steps from 0.01 to
# 100,000 on both sides of zero, so any target scale gets a few buckets per decade in a fixed number
# of series. MLROLLOUT_PREDICTION_BUCKETS sets others (increasing numbers, comma-separated).
_STEPS = (*(m * 10.0**e for e in range(-2, 5) for m in (1.0, 2.5, 5.0)), 1e5)
DEFAULT_PREDICTION_BUCKETS: tuple[float, ...] = (*(-b for b in reversed(_STEPS)), 0.0, *_STEPS)
MAX_PREDICTION_BUCKETS = 100

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServingConfig:
    model_uri: str = ""
    model_name: str | None = None
    model_version: str | None = None
    track: str = "stable"
    limits: Limits = field(default_factory=Limits)
    api_keys_file: str | None = None
    api_keys: str | None = None
    # None (auto): batch unless the model scores through a verified fast path (batching.batching_pays).
    microbatch: bool | None = None
    microbatch_max_rows: int = 256
    feedback: StoreLimits = field(default_factory=StoreLimits)
    feedback_key: str | None = None  # signs prediction tokens; the same for every pod of a model
    skops_trusted_types: tuple[str, ...] = ()
    allow_pickle: bool = False
    fastpath: bool = True
    log_requests: bool = True
    prediction_buckets: tuple[float, ...] = DEFAULT_PREDICTION_BUCKETS
    shadow_config: str | None = None  # a JSON file (the operator's ConfigMap) saying what to mirror
    shadow_queue: int = 64  # copies waiting per worker; more are dropped and counted
    shadow_senders: int = 2  # sender threads per worker
    shadow_sample_size: int = 100  # recent disagreements kept per worker
    shadow_relay: str | None = None  # set by mlrollout-serve: the pod's relay socket (shadow_relay.py)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        e = os.environ if env is None else env
        track = e.get("MLROLLOUT_TRACK", "stable").strip() or "stable"
        return cls(
            model_uri=e.get("MLROLLOUT_MODEL_URI", "").strip(),
            model_name=e.get("MLROLLOUT_MODEL_NAME") or None,
            model_version=e.get("MLROLLOUT_MODEL_VERSION") or None,
            track=track,
            limits=Limits(
                max_body_bytes=_int(e, "MLROLLOUT_MAX_BODY_BYTES", Limits.max_body_bytes, 1),
                max_rows=_int(e, "MLROLLOUT_MAX_ROWS", Limits.max_rows, 1),
            ),
            api_keys_file=e.get("MLROLLOUT_API_KEYS_FILE") or None,
            api_keys=e.get("MLROLLOUT_API_KEYS") or None,
            microbatch=_auto_bool(e, "MLROLLOUT_MICROBATCH"),
            microbatch_max_rows=_int(e, "MLROLLOUT_MICROBATCH_MAX_ROWS", 256, 1),
            feedback=StoreLimits(
                slots=_int(e, "MLROLLOUT_FEEDBACK_SLOTS", StoreLimits.slots, 1),
                max_rows=_int(e, "MLROLLOUT_FEEDBACK_MAX_ROWS", StoreLimits.max_rows, 1),
                ttl_seconds=float(_int(e, "MLROLLOUT_FEEDBACK_TTL_SECONDS", int(StoreLimits.ttl_seconds), 1)),
            ),
            feedback_key=e.get("MLROLLOUT_FEEDBACK_KEY") or None,
            skops_trusted_types=tuple(
                t.strip() for t in e.get("MLROLLOUT_SKOPS_TRUSTED_TYPES", "").split(",") if t.strip()
            ),
            allow_pickle=_bool(e, "MLROLLOUT_ALLOW_PICKLE", False),
            fastpath=_bool(e, "MLROLLOUT_FASTPATH", True),
            log_requests=_bool(e, "MLROLLOUT_LOG_REQUESTS", True),
            prediction_buckets=_buckets(e, "MLROLLOUT_PREDICTION_BUCKETS"),
            shadow_config=e.get("MLROLLOUT_SHADOW_CONFIG") or None,
            shadow_queue=_int(e, "MLROLLOUT_SHADOW_QUEUE", 64, 1),
            shadow_senders=_int(e, "MLROLLOUT_SHADOW_SENDERS", 2, 1),
            shadow_sample_size=_int(e, "MLROLLOUT_SHADOW_SAMPLE_SIZE", 100, 1),
        )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    return default if raw is None else _truth(name, raw, "(true/false)")


def _auto_bool(env: Mapping[str, str], name: str) -> bool | None:
    """True/False, or None for `auto` (also when unset or empty)."""
    raw = env.get(name)
    if raw is None or raw.strip().lower() in {"", "auto"}:
        return None
    return _truth(name, raw, "(true/false) or auto")


def _truth(name: str, raw: str, accepted: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean {accepted}")


def _buckets(env: Mapping[str, str], name: str) -> tuple[float, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return DEFAULT_PREDICTION_BUCKETS
    try:
        values = tuple(float(v) for v in raw.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a comma-separated list of numbers") from None
    if not values or len(values) > MAX_PREDICTION_BUCKETS:
        raise ConfigError(f"{name} must list 1 to {MAX_PREDICTION_BUCKETS} bucket bounds")
    if any(not math.isfinite(v) for v in values) or any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(f"{name}={raw!r} must be finite and strictly increasing")
    return values

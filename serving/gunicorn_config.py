"""Gunicorn settings from the environment (pure), and the hooks multiprocess metrics need."""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlrollout.serving.config import ConfigError, _bool, _int


def gunicorn_options(env: Mapping[str, str]) -> dict[str, Any]:
    host = env.get("MLROLLOUT_HOST", "0.0.0.0")
    port = _int(env, "MLROLLOUT_PORT", 8080, 1)
    if port > 65535:
        raise ConfigError(f"MLROLLOUT_PORT={port} is not a TCP port")
    return {
        "bind": [env.get("MLROLLOUT_BIND") or f"{host}:{port}"],
        "workers": _int(env, "MLROLLOUT_WORKERS", 2, 1),
        # Threads give keep-alive and let concurrent requests share one micro-batch.
        "worker_class": "gthread",
        "threads": _int(env, "MLROLLOUT_THREADS", 8, 1),
        "timeout": _int(env, "MLROLLOUT_TIMEOUT", 30, 1),
        "graceful_timeout": _int(env, "MLROLLOUT_GRACEFUL_TIMEOUT", 20, 1),
        "keepalive": _int(env, "MLROLLOUT_KEEPALIVE", 5, 0),
        "backlog": _int(env, "MLROLLOUT_BACKLOG", 2048, 1),
        "max_requests": _int(env, "MLROLLOUT_MAX_REQUESTS", 0, 0),
        "max_requests_jitter": _int(env, "MLROLLOUT_MAX_REQUESTS_JITTER", 0, 0),
        # Load the model once in the master: workers share its memory and start instantly.
        "preload_app": _bool(env, "MLROLLOUT_PRELOAD", True),
        # Heartbeat files in memory, not on a possibly slow disk.
        "worker_tmp_dir": "/dev/shm" if Path("/dev/shm").is_dir() else None,  # noqa: S108
        "accesslog": None,  # the app logs one line per request itself (without secrets)
        "errorlog": "-",
        "loglevel": env.get("MLROLLOUT_LOG_LEVEL", "info").lower(),
        "proc_name": "mlrollout-serve",
        "control_socket_disable": True,  # a shared default path would clash between servers
        "child_exit": child_exit,
        "pre_fork": pre_fork,
        "post_fork": post_fork,
        "worker_exit": worker_exit,
        "on_exit": on_exit,
    }


def prepare_multiprocess_dir(env: dict[str, str] | os._Environ[str]) -> Path:
    """Start from an empty metrics dir: files of a previous run would add stale counts."""
    raw = env.get("PROMETHEUS_MULTIPROC_DIR")
    directory = Path(raw) if raw else Path("/tmp/mlrollout-metrics")  # noqa: S108 - default inside the pod
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    relay = getattr(server.app, "shadow_relay", None)
    if relay is not None:
        relay.stop()


def worker_exit(server: Any, worker: Any) -> None:
    from mlrollout.serving.logs import flush_access_log

    flush_access_log()  # the lines of the worker's last requests


def pre_fork(server: Any, worker: Any) -> None:
    # What the master holds (the preloaded model, numpy, scikit-learn, Flask: ~250k objects) lives as
    # long as the workers: frozen, a worker's full collection no longer walks it (about 120 ms -> 1 ms
    # here, a pause of every request in flight on that worker), and the collector never writes to it,
    # which keeps its pages shared copy-on-write (the gc.freeze docs' advice for fork without exec).
    gc.freeze()


def post_fork(server: Any, worker: Any) -> None:
    # Seed the worker's info gauges so they exist in its own metrics file.
    app = getattr(server.app, "loaded_app", None)
    state = app.extensions.get("mlrollout") if app is not None else None
    if state is not None and state.service is not None:
        model = state.service.model
        state.service.metrics.model_loaded(model.flavor, model.load_seconds)

"""The command lines of mlrollout's local processes, one copy for tests, demo and benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def _mlflow_argv(root: Path, host: str, port: int, workers: int, artifacts: list[str]) -> list[str]:
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        *artifacts,
        "--workers",
        str(workers),
    ]


def mlflow_server_argv(root: Path, port: int, *, workers: int = 1) -> list[str]:
    """`mlflow server` with state under `root` (mlflow.db, artifacts/), loopback only. Clients write
    artifacts to the local path themselves (--no-serve-artifacts), so a model version's source is a
    plain file:// location that serving can load without the tracking server."""
    artifacts = ["--default-artifact-root", (root / "artifacts").as_uri(), "--no-serve-artifacts"]
    return _mlflow_argv(root, "127.0.0.1", port, workers, artifacts)


def mlflow_artifact_server_argv(root: Path, host: str, port: int, *, workers: int = 1) -> list[str]:
    """`mlflow server` that also serves its artifacts (--serve-artifacts): a model version's source is
    an mlflow-artifacts: URI, so pods that reach only the tracking server load models through it,
    as they do from a real cluster's MLflow. Listens on `host` (the real node's bridge address)."""
    artifacts = [
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--default-artifact-root",
        "mlflow-artifacts:/",
        # Pods call it by its Service name (mlflow.mlflow); MLflow 3 checks the Host header.
        "--allowed-hosts",
        "*",
    ]
    return _mlflow_argv(root, host, port, workers, artifacts)


def operator_argv(liveness_port: int, *, namespaces: Sequence[str] = ()) -> list[str]:
    """The operator as a process, without peering; -P so ./operator never shadows the stdlib module
    when started from the repository root."""
    argv = [sys.executable, "-P", "-m", "mlrollout.operator", "--standalone"]
    for ns in namespaces:
        argv += ["--namespace", ns]
    return [*argv, "--liveness", liveness_url(liveness_port)]


def liveness_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/healthz"

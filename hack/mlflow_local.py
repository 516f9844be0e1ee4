"""The one way mlrollout starts a local MLflow tracking server + registry (tests, demo, benchmarks):
sqlite backend, local artifact root written by clients directly, loopback only."""

from __future__ import annotations

import sys
from pathlib import Path


def server_argv(root: Path, port: int, *, workers: int = 1) -> list[str]:
    """`mlflow server` with state under `root` (mlflow.db, artifacts/). Clients write artifacts to
    the local path themselves (--no-serve-artifacts), so a model version's source is a plain
    file:// location that serving can load without the tracking server."""
    artifacts = root / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--default-artifact-root",
        artifacts.as_uri(),
        "--no-serve-artifacts",
        "--workers",
        str(workers),
    ]

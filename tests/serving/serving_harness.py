"""Start and talk to the real serving server (`mlrollout-serve`, gunicorn, several workers) in tests."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from support.mlflow_models import ModelVersionInfo
from support.procs import ManagedProcess, ProcessFailed, free_port

API_KEY = "test-key-7f3a"
WORKERS = 3


@dataclass
class RunningServer:
    url: str
    process: ManagedProcess
    metrics_dir: Path
    model: ModelVersionInfo

    def post(self, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth:
            headers.setdefault("Authorization", f"Bearer {API_KEY}")
        return requests.post(self.url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, *, auth: bool = False, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth:
            headers.setdefault("Authorization", f"Bearer {API_KEY}")
        return requests.get(self.url + path, headers=headers, timeout=30, **kwargs)


def start_server(
    name: str,
    model_uri: str,
    component_logs: Any,
    tmp: Path,
    extra_env: dict[str, str] | None = None,
    model_info: ModelVersionInfo | None = None,
) -> RunningServer:
    port = free_port()
    keys = tmp / "api-keys"
    keys.write_text(f"other-key\n{API_KEY}\n")
    metrics_dir = tmp / "prometheus"
    env = {
        **os.environ,
        "MLROLLOUT_MODEL_URI": model_uri,
        "MLROLLOUT_BIND": f"127.0.0.1:{port}",
        "MLROLLOUT_WORKERS": str(WORKERS),
        "MLROLLOUT_THREADS": "4",
        "MLROLLOUT_API_KEYS_FILE": str(keys),
        "MLROLLOUT_TRACK": "canary",
        "MLROLLOUT_MAX_ROWS": "500",
        "MLROLLOUT_MAX_BODY_BYTES": "200000",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **(extra_env or {}),
    }
    cli = Path(sys.executable).parent / "mlrollout-serve"
    process = ManagedProcess.start(name, [str(cli)], env=env, logs=component_logs)
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http(url + "/readyz", timeout=120)
    except ProcessFailed:
        process.stop()
        raise
    assert model_info is not None
    return RunningServer(url=url, process=process, metrics_dir=metrics_dir, model=model_info)

#!/usr/bin/env python3
"""`make demo`: bring the local stack up (control plane + MLflow registry) and tell how to use it.

python hack/demo.py          # up (idempotent)
python hack/demo.py down     # stop everything the demo started
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
STATE = ROOT / ".local"
sys.path.insert(0, str(HACK))

from local_cluster import ClusterError, LocalCluster, free_port  # noqa: E402

MLFLOW_DIR = STATE / "mlflow"
MLFLOW_PID = MLFLOW_DIR / "server.pid"
MLFLOW_PORT_FILE = MLFLOW_DIR / "port"


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def mlflow_up() -> str:
    MLFLOW_DIR.mkdir(parents=True, exist_ok=True)
    if _alive(MLFLOW_PID) and MLFLOW_PORT_FILE.exists():
        return f"http://127.0.0.1:{MLFLOW_PORT_FILE.read_text().strip()}"
    port = free_port()
    artifacts = MLFLOW_DIR / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log = (MLFLOW_DIR / "server.log").open("ab")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{MLFLOW_DIR / 'mlflow.db'}",
            "--default-artifact-root",
            artifacts.as_uri(),
            "--no-serve-artifacts",
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    MLFLOW_PID.write_text(str(proc.pid))
    MLFLOW_PORT_FILE.write_text(str(port))
    uri = f"http://127.0.0.1:{port}"
    if not _wait_http(f"{uri}/health", 120):
        raise SystemExit(f"MLflow server did not start; log: {MLFLOW_DIR / 'server.log'}")
    return uri


def down() -> None:
    pid = _alive(MLFLOW_PID)
    if pid:
        os.killpg(pid, signal.SIGTERM)
    MLFLOW_PID.unlink(missing_ok=True)
    LocalCluster(state=STATE / "cluster").down()
    print("demo stack stopped (state kept in .local/; remove it for a clean start)")


def up() -> None:
    t0 = time.monotonic()
    cluster = LocalCluster(state=STATE / "cluster")
    try:
        cluster.up()
    except ClusterError as exc:
        raise SystemExit(f"local control plane failed: {exc}") from exc
    uri = mlflow_up()
    nodes = cluster.kubectl("get", "nodes").stdout
    print(
        f"""
mlrollout local stack is up ({time.monotonic() - t0:.0f}s)

  Kubernetes   export KUBECONFIG={cluster.kubeconfig}
{nodes}
  MLflow       {uri}   (UI and registry; export MLFLOW_TRACKING_URI={uri})

Look around:
  kubectl get nodes,pods -A
  hack/local-cluster status
  logs: {cluster.logs}/ and {MLFLOW_DIR / "server.log"}

Stop everything:  python3 hack/demo.py down   (or: make cluster-down)
"""
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["down"]:
        down()
    else:
        up()

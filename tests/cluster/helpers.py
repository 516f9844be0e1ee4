"""Helpers for operator cluster tests: registered model versions, the operator as a real process,
a TCP proxy in front of MLflow (to cut the registry off), and kubectl in one namespace."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import launch
import pytest
from support.mlflow_models import ModelVersionInfo
from support.procs import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "modeldeployment.yaml"
IMAGE = "mlrollout/serving:test"  # kwok pods never run it
MODEL = "cluster-churn"

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.3) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass(frozen=True)
class Models:
    v1: ModelVersionInfo
    v2: ModelVersionInfo
    v3: ModelVersionInfo
    poor: ModelVersionInfo


class Operator:
    """The operator as a separate process (`python -m mlrollout.operator --standalone`)."""

    log_name = "operator"
    # The `namespace` fixture's t-* namespaces only: the real-pod tier's r-* ones are the installed
    # operator's.
    namespaces: tuple[str, ...] = ("t-*",)
    resync_seconds: str | None = "20"

    def __init__(self, cluster: Any, tracking_uri: str, logs: Any) -> None:
        self.cluster = cluster
        self.tracking_uri = tracking_uri
        self.logs = logs
        self.proc: ManagedProcess | None = None
        self.starts = 0
        self.metrics_port = free_port()

    def base_env(self) -> dict[str, str]:
        return {
            **self.cluster.env(),
            "MLROLLOUT_TRACKING_URI": self.tracking_uri,
            "MLROLLOUT_METRICS_PORT": str(self.metrics_port),
            "MLROLLOUT_METRICS_ADDRESS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> None:
        port = free_port()
        self.starts += 1
        env = self.base_env()
        if self.resync_seconds is not None:
            env["MLROLLOUT_RESYNC_SECONDS"] = self.resync_seconds
        argv = launch.operator_argv(port, namespaces=self.namespaces)
        self.proc = ManagedProcess.start(self.log_name, argv, env=env, cwd=ROOT, logs=self.logs)
        self.proc.wait_http(launch.liveness_url(port), timeout=60)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive


class TcpProxy:
    """A loopback TCP forwarder we can stop and start, to make MLflow unreachable for real."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        t = threading.Thread(target=self._accept, args=(srv,), daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._conns.clear()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Kubectl:
    """kubectl in one namespace, with the plugin on PATH (so `kubectl mlrollout` works)."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.env = {**cluster.env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        import subprocess

        proc = subprocess.run(
            ["kubectl", *args, "-n", self.ns],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def apply(self, manifest: dict[str, Any], check: bool = True) -> Any:
        return self.run("apply", "-f", "-", input=json.dumps(manifest), check=check)

    def md(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run("get", "md", name, "-o", "json").stdout)
        return out

    def status(self, name: str) -> dict[str, Any]:
        return self.md(name).get("status") or {}

    def columns(self, name: str) -> list[str]:
        """`kubectl get md NAME` as cells NAME MODEL STABLE CANARY WEIGHT PHASE AGE (empty cells kept:
        kubectl leaves a column blank when its field is absent)."""
        header, row = self.run("get", "md", name).stdout.splitlines()[:2]
        names = ["NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
        assert header.split() == names
        starts = [header.index(n) for n in names]
        ends = [*starts[1:], None]
        return [row[a:b].strip() for a, b in zip(starts, ends, strict=True)]

    def deployments(self, md_name: str) -> dict[str, dict[str, Any]]:
        """Serving Deployments of a ModelDeployment keyed by `v<version>`."""
        out = json.loads(
            self.run(
                "get", "deployments", "-l", f"mlrollout.io/model-deployment={md_name}", "-o", "json"
            ).stdout
        )
        result: dict[str, dict[str, Any]] = {}
        for d in out["items"]:
            labels = d["metadata"]["labels"]
            key = f"v{labels['mlrollout.io/version']}"
            result[key] = {
                "name": d["metadata"]["name"],
                "replicas": d["spec"]["replicas"],
                "ready": d.get("status", {}).get("readyReplicas", 0),
                "track": labels.get("mlrollout.io/track"),
                "uid": d["metadata"]["uid"],
                "template": d["spec"]["template"],
            }
        return result

    def replicas(self, md_name: str) -> dict[str, int]:
        return {k: v["replicas"] for k, v in self.deployments(md_name).items()}

    def events(self, name: str) -> list[str]:
        out = json.loads(
            self.run("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
        )
        return [f"{e.get('reason')}: {e.get('message')}" for e in out["items"]]

    def plugin(self, *args: str) -> str:
        proc = self.run("mlrollout", *args)
        return str(proc.stdout)


def model_deployment(
    name: str,
    version: str,
    *,
    replicas: int = 10,
    steps: list[dict[str, Any]] | None = None,
    tracking_uri: str | None = None,
    threshold: float = 0.8,
    deadline: int = 60,
    serving: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": MODEL, "version": version},
        "gate": {"metric": "f1_score", "threshold": threshold},
        "serving": {"image": IMAGE, "replicas": replicas, **(serving or {})},
        "rollout": {
            "steps": steps
            or [
                {"setWeight": 10},
                {"pause": {}},
                {"setWeight": 50},
                {"pause": {}},
                {"setWeight": 100},
                {"pause": {}},
            ],
            "progressDeadlineSeconds": deadline,
        },
        **spec,
    }
    if tracking_uri:
        body["registry"] = {"trackingUri": tracking_uri}
    return {
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": body,
    }

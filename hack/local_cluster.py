#!/usr/bin/env python3
"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes, so Pods of Deployments get scheduled and become Ready).

Binaries come from hack/build-k8s.sh (pinned Go modules, cached by version). Everything listens
on 127.0.0.1 with certificates generated for this state directory. Standard library only, so it
runs before any virtualenv exists.

    hack/local-cluster up      # start (idempotent), print the kubeconfig path
    hack/local-cluster env     # print `export KUBECONFIG=...`
    hack/local-cluster status
    hack/local-cluster down    # stop every process, keep nothing running

Tests use the same code through `LocalCluster` (see tests/conftest.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HACK = Path(__file__).resolve().parent
DEFAULT_STATE = HACK.parent / ".local" / "cluster"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = "10.96.0.0/16"  # object addresses only: nothing ever sends traffic there
POD_CIDR = "10.244.0.1/16"


class ClusterError(RuntimeError):
    """A component could not be built or started; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def build_binaries() -> Path:
    """Build (or find cached) binaries; raise ClusterError with the build log on failure."""
    proc = subprocess.run(["bash", str(HACK / "build-k8s.sh")], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr + proc.stdout).splitlines()[-80:])
        raise ClusterError(f"building the Kubernetes binaries failed:\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed: {proc.stderr}")


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert, admin client cert (system:masters) and SA signing key."""
    if (pki / "admin.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-key",
        "ca.key",
        "-subj",
        "/CN=mlrollout-local-ca",
        "-days",
        "3650",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    (pki / "apiserver.ext").write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subj, ext in (
        ("apiserver", "/CN=kube-apiserver", "apiserver.ext"),
        ("admin", "/O=system:masters/CN=mlrollout-admin", "client.ext"),
    ):
        _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out", f"{name}.csr", cwd=pki)
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            ext,
            "-out",
            f"{name}.crt",
            cwd=pki,
        )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig_text(server: str, pki: Path) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mlrollout-local",
                    "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(pki / "admin.crt"),
                        "client-key": str(pki / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "mlrollout-local", "context": {"cluster": "mlrollout-local", "user": "admin"}}
            ],
            "current-context": "mlrollout-local",
        },
        indent=2,
    )


def kwok_node(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "kubernetes.io/role": "agent",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


@dataclass
class LocalCluster:
    state: Path = DEFAULT_STATE
    nodes: int = 3
    bin_dir: Path | None = None  # None: build (or find cached) binaries from hack/build-k8s.sh
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def log_path(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    # --- process bookkeeping (pid files, so `down` works from another shell) ---
    def _pidfile(self, component: str) -> Path:
        return self.state / "run" / f"{component}.pid"

    def _alive_pid(self, component: str) -> int | None:
        try:
            pid = int(self._pidfile(component).read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and component.encode() not in cmdline.read_bytes():
            return None  # pid reused by something else
        return pid

    def running(self) -> bool:
        return all(self._alive_pid(c) for c in COMPONENTS) and self.kubeconfig.exists()

    def _spawn(self, component: str, argv: Sequence[str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.state / "run").mkdir(parents=True, exist_ok=True)
        log = self.log_path(component).open("ab")
        log.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.procs[component] = proc
        self._pidfile(component).write_text(str(proc.pid))

    def _check_alive(self, component: str) -> None:
        proc = self.procs.get(component)
        if proc is not None and proc.poll() is not None:
            raise ClusterError(
                f"{component} exited with code {proc.returncode}; log {self.log_path(component)}:\n"
                + log_tail(self.log_path(component))
            )

    def _wait(self, component: str, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(component)
            if callable(ready) and ready():
                return
            time.sleep(0.2)
        raise ClusterError(
            f"{component} not ready within {timeout:.0f}s; log {self.log_path(component)}:\n"
            + log_tail(self.log_path(component))
        )

    def _https_ok(self, url: str) -> bool:
        pki = self.state / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    # --- lifecycle ---
    def up(self, timeout: float = 120) -> None:
        if self.running():
            return
        self.down()  # a half-dead previous run: clear it out first
        bin_dir = self.bin_dir or build_binaries()
        b = {c: str(bin_dir / c) for c in COMPONENTS}
        pki = self.state / "pki"
        make_pki(pki)
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        self.kubeconfig.write_text(kubeconfig_text(server, pki))
        started = time.monotonic()

        self._spawn(
            "etcd",
            [
                b["etcd"],
                "--name=mlrollout",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=mlrollout=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",  # a throwaway test store: speed over durability
                "--quota-backend-bytes=4294967296",
            ],
        )
        self._wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), 30)

        self._spawn(
            "kube-apiserver",
            [
                b["kube-apiserver"],
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                # Loopback endpoints are invalid for the `kubernetes` Service: skip reconciling it.
                "--endpoint-reconciler-type=none",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--profiling=false",
                "--watch-cache=true",
            ],
        )
        self._wait("kube-apiserver", lambda: self._https_ok(f"{server}/readyz"), 90)

        self._spawn(
            "kube-controller-manager",
            [
                b["kube-controller-manager"],
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
                "--node-monitor-grace-period=2m",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                b["kube-scheduler"],
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )
        self._spawn(
            "kwok",
            [
                b["kwok"],
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                # Heartbeat through Leases (cheap) rather than Node status: under a loaded 2-core
                # machine status-only heartbeats arrived late enough for nodes to flap NotReady.
                "--node-lease-duration-seconds=40",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                "--node-port=0",
                "--server-address=127.0.0.1:0",
            ],
        )
        nodes = "\n---\n".join(json.dumps(kwok_node(f"kwok-node-{i}")) for i in range(self.nodes))
        self._wait("kube-controller-manager", lambda: True, 1)
        self.kubectl("apply", "-f", "-", input=nodes)
        self._wait("kwok", self._nodes_ready, timeout - (time.monotonic() - started))
        self._wait("kube-controller-manager", self._default_sa_exists, 60)

    def _nodes_ready(self) -> bool:
        out = self.kubectl(
            "get",
            "nodes",
            "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
            check=False,
        ).stdout.split()
        return len(out) >= self.nodes and all(s == "True" for s in out)

    def _default_sa_exists(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    def down(self) -> None:
        for component in reversed(COMPONENTS):
            pid = self._alive_pid(component)
            proc = self.procs.pop(component, None)
            if pid is None and proc is None:
                continue
            target = pid if pid is not None else proc.pid if proc else None
            if target is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(target, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(target, 0)
                except ProcessLookupError:
                    break
                if proc is not None and proc.poll() is not None:
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(target, signal.SIGKILL)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            self._pidfile(component).unlink(missing_ok=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/local-cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "env", "status", "build"])
    parser.add_argument(
        "--state", type=Path, default=Path(os.environ.get("MLROLLOUT_CLUSTER_STATE", DEFAULT_STATE))
    )
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args(argv)
    cluster = LocalCluster(state=args.state.resolve(), nodes=args.nodes)
    try:
        if args.command == "build":
            print(build_binaries())
        elif args.command == "up":
            t0 = time.monotonic()
            cluster.up()
            print(
                f"local cluster up in {time.monotonic() - t0:.1f}s; logs in {cluster.logs}", file=sys.stderr
            )
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "env":
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "status":
            for c in COMPONENTS:
                pid = cluster._alive_pid(c)
                print(f"{c:26} {'running pid ' + str(pid) if pid else 'stopped'}")
            return 0 if cluster.running() else 1
        else:
            cluster.down()
    except ClusterError as exc:
        print(f"local-cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

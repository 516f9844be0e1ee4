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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import real_node

HACK = Path(__file__).resolve().parent
DEFAULT_STATE = HACK.parent / ".local" / "cluster"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = real_node.SERVICE_CIDR  # kube-proxy programs it on the real node; kwok's never carry traffic
POD_CIDR = "10.244.0.1/16"  # kwok's fake pod addresses (blackholed while the real node runs)


class ClusterError(RuntimeError):
    """A component could not be built or started; the message carries its log tail."""


def free_port() -> int:
    return real_node.free_port_on("127.0.0.1")


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


def sign_cert(pki: Path, name: str, subject: str, ext: str, ca: Path | None = None) -> None:
    """A key and a certificate for `subject` in `pki`, signed by the CA in `ca` (default: `pki`)."""
    ca = ca or pki
    (pki / f"{name}.ext").write_text(ext)
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
        "-CAcreateserial", "-CAserial", str(ca / "ca.srl"), "-days", "3650", "-extfile", f"{name}.ext",
        "-out", f"{name}.crt", cwd=pki,
    )  # fmt: skip


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert, admin client cert (system:masters), the apiserver's client cert
    for kubelets (`kubectl logs/exec` on the real node) and the SA signing key."""
    if (pki / "admin.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-nodes", "-key", "ca.key", "-subj", "/CN=mlrollout-local-ca",
        "-days", "3650", "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    sign_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:{real_node.NODE_IP},DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
        "extendedKeyUsage=serverAuth\n",
    )
    client = "extendedKeyUsage=clientAuth\n"
    sign_cert(pki, "admin", "/O=system:masters/CN=mlrollout-admin", client)
    sign_cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", client)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig_text(server: str, pki: Path) -> str:
    return real_node.kubeconfig(
        server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key", "admin", name="mlrollout-local"
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
    # A real kubelet node beside the kwok ones (needs root; one per machine, see hack/real_node.py).
    real_node: bool = False
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _bin_dir: Path | None = None
    _server: str | None = None

    @property
    def components(self) -> tuple[str, ...]:
        return COMPONENTS + (real_node.COMPONENTS if self.real_node else ())

    @property
    def node_paths(self) -> real_node.NodePaths:
        return real_node.NodePaths(root=self.state / "node", ca=self.state / "pki" / "ca.crt")

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
        return all(self._alive_pid(c) for c in self.components) and self.kubeconfig.exists()

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
    def up(self, timeout: float = 120, *, join_node: bool = True) -> None:
        """Start the control plane and kwok nodes; with `real_node`, also the real node unless
        `join_node` is False (then `join_real_node()` adds it later, e.g. only when a test needs it)."""
        if self.running() or (self.real_node and not join_node and self._control_plane_running()):
            return
        self.down()  # a half-dead previous run: clear it out first
        if self.real_node:
            missing = real_node.missing_prerequisites()
            if missing:
                raise ClusterError("a real node needs: " + "; ".join(missing))
        bin_dir = self.bin_dir or build_binaries()
        b = {c: str(bin_dir / c) for c in COMPONENTS}
        pki = self.state / "pki"
        make_pki(pki)
        # With a real node the apiserver listens on the node's bridge address, which pods reach
        # (through the `kubernetes` Service); without one, on loopback only.
        api_host = "127.0.0.1"
        if self.real_node:
            real_node.claim(self.state, os.getpid())
            real_node.setup_network()
            api_host = real_node.NODE_IP
        etcd_port, etcd_peer = free_port(), free_port()
        # The apiserver keeps its port across restarts of one state: Services (`kubernetes`) and
        # kubeconfigs in pods and files keep pointing at it.
        api_port = self._sticky_port("kube-apiserver", api_host)
        server = f"https://{api_host}:{api_port}"
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
                f"--bind-address={api_host}",
                f"--advertise-address={api_host}",
                f"--secure-port={api_port}",
                *self._apiserver_node_flags(pki),
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
        self._bin_dir, self._server = bin_dir, server
        if self.real_node and join_node:
            self.join_real_node()

    def _sticky_port(self, name: str, host: str) -> int:
        ports_file = self.state / "ports.json"
        try:
            ports = json.loads(ports_file.read_text())
        except (FileNotFoundError, ValueError):
            ports = {}
        key = f"{name}@{host}"
        port = ports.get(key)
        if isinstance(port, int):
            with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                # As the servers themselves bind: a port left in TIME_WAIT by the last run is free to
                # them, and keeping it keeps the `kubernetes` Endpoints in etcd right.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                return port
        port = real_node.free_port_on(host)
        ports[key] = port
        self.state.mkdir(parents=True, exist_ok=True)
        ports_file.write_text(json.dumps(ports))
        return port

    def _control_plane_running(self) -> bool:
        return all(self._alive_pid(c) for c in COMPONENTS) and self.kubeconfig.exists()

    def join_real_node(self) -> None:
        """Start containerd, kubelet, kube-proxy and CoreDNS (idempotent once they run)."""
        if not self.real_node:
            raise ClusterError("this cluster was started without --real-node")
        if all(self._alive_pid(c) for c in real_node.COMPONENTS) and self._real_node_ready():
            return
        self._start_real_node(self._bin_dir or self.bin_dir or build_binaries(), self._server_url())

    def _server_url(self) -> str:
        if self._server:
            return self._server
        config = json.loads(self.kubeconfig.read_text())
        return str(config["clusters"][0]["cluster"]["server"])

    def _apiserver_node_flags(self, pki: Path) -> list[str]:
        if not self.real_node:
            # Loopback endpoints are invalid for the `kubernetes` Service: skip reconciling it.
            return ["--endpoint-reconciler-type=none"]
        return [
            # kubectl logs/exec: the apiserver calls the kubelet as a client it authorizes, and
            # checks the kubelet's serving certificate against the cluster CA.
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            # Namespaces can place their pods on the real node (annotations), as dedicated-node
            # clusters do, without every workload spelling out tolerations.
            "--enable-admission-plugins=NodeRestriction,PodNodeSelector,PodTolerationRestriction",
        ]

    def _start_real_node(self, bin_dir: Path, server: str) -> None:
        import node_images

        paths = self.node_paths
        real_node.node_pki(paths, lambda d, n, subj, ext: sign_cert(d, n, subj, ext, ca=self.state / "pki"))
        ports = real_node.NodePorts(
            kubelet=self._sticky_port("kubelet", real_node.NODE_IP),
            kubelet_healthz=free_port(),
            proxy_healthz=free_port(),
            proxy_metrics=free_port(),
        )
        real_node.write_configs(paths, server, ports)
        self._spawn("containerd", real_node.containerd_argv(paths))
        self._wait("containerd", real_node.containerd_answers, 30)
        if real_node.purge_containers():
            # A crashed run's containers were still known: restart so the CRI forgets them too.
            self._stop(["containerd"])
            self._spawn("containerd", real_node.containerd_argv(paths))
            self._wait("containerd", real_node.containerd_answers, 30)
        log = self.log_path("containerd")
        self._wait("containerd", lambda: real_node.cri_ready(log), 180)
        real_node.update_owner_pid(self.state, self.procs["containerd"].pid)  # lives as long as the node
        node_images.ensure_system_images(bin_dir, coredns_version())
        self._spawn("kubelet", real_node.kubelet_argv(bin_dir, paths))
        self._spawn("kube-proxy", real_node.kube_proxy_argv(bin_dir, paths))
        self._wait("kubelet", self._real_node_ready, 90)
        self.kubectl(
            "apply", "-f", "-", input=real_node.dns_manifests(node_images.coredns_ref(coredns_version()))
        )
        self._wait("kubelet", self._dns_ready, 90)

    def _real_node_ready(self) -> bool:
        out = self.kubectl(
            "get", "node", real_node.NODE_NAME, "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False,
        ).stdout  # fmt: skip
        return out.strip() == "True"

    def _dns_ready(self) -> bool:
        out = self.kubectl(
            "-n", "kube-system", "get", "deployment", "coredns", "-o", "jsonpath={.status.readyReplicas}",
            check=False,
        ).stdout  # fmt: skip
        return out.strip() == "1"

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
        node_running = any(self._alive_pid(c) for c in real_node.COMPONENTS)
        if self.real_node or node_running or (self.state / "node").exists():
            self._stop_real_node()
        self._stop(reversed(COMPONENTS))

    def _stop_real_node(self) -> None:
        """Pods first (so their containers stop cleanly), then kubelet, containers, containerd,
        mounts, kube-proxy's rules and the bridge: the order that leaves nothing behind."""
        if self._alive_pid("kubelet") and self._alive_pid("kube-apiserver"):
            # Nothing may recreate pods while the node drains.
            self._stop(["kube-controller-manager", "kube-scheduler"])
            self.kubectl(
                "delete", "pods", "--all-namespaces", "--all",
                f"--field-selector=spec.nodeName={real_node.NODE_NAME}",
                "--wait=true", "--timeout=60s", check=False, timeout=90,
            )  # fmt: skip
        self._stop(["kube-proxy", "kubelet"])
        if real_node.owned_by_other(self.state):
            self._stop(["containerd"])
            return  # the machine-wide clean-up below would hit the other cluster's node
        real_node.kill_containers()
        if self._alive_pid("containerd"):
            real_node.purge_containers()
        self._stop(["containerd"])
        # Where kube-proxy lives, without building anything while tearing down.
        bin_dir = (
            self.bin_dir
            or self._bin_dir
            or Path(
                subprocess.run(
                    ["bash", str(HACK / "build-k8s.sh"), "--print-bin"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.strip()
                or "/nonexistent"
            )
        )
        real_node.clear_leftovers(self.state / "node", kube_proxy=bin_dir / "kube-proxy")
        real_node.release(self.state)

    def _stop(self, components: Iterable[str]) -> None:
        for component in components:
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


def coredns_version() -> str:
    for line in (HACK / "versions.env").read_text().splitlines():
        if line.startswith("COREDNS_VERSION="):
            return line.split("=", 1)[1].strip()
    raise ClusterError("COREDNS_VERSION missing from hack/versions.env")


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
    parser.add_argument(
        "--real-node",
        action="store_true",
        default=os.environ.get("MLROLLOUT_REAL_NODE") == "1",
        help="also run a real kubelet node (root; containerd, CNI, kube-proxy, CoreDNS)",
    )
    args = parser.parse_args(argv)
    state = args.state.resolve()
    # `status`/`down` find a node started by an earlier `up --real-node` from its state.
    real = args.real_node or (state / "node").exists()
    cluster = LocalCluster(state=state, nodes=args.nodes, real_node=real)
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
            for c in cluster.components:
                pid = cluster._alive_pid(c)
                print(f"{c:26} {'running pid ' + str(pid) if pid else 'stopped'}")
            return 0 if cluster.running() else 1
        else:
            cluster.down()
    except (ClusterError, real_node.NodeError) as exc:
        print(f"local-cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real kubelet node for the local control plane: containerd (Debian) with its own config, root and
socket, runc, a CNI bridge network, kube-proxy (iptables) and kubelet, with node credentials.

The facts this follows are in ../shared/notes/real-node.md. Addresses: the node's own address is the
bridge gateway (NODE_IP) in the pod range, so the apiserver, the kubelet and host services the pods
reach (MLflow) listen there or on loopback, never on the machine's outside address. Pods cannot send
anything off the machine (ISOLATE_CHAIN drops forwarded pod traffic that leaves by another interface).

One real node per machine: `claim()` takes it for a state directory (a lock plus an owner file) and
clears what a crashed run left behind; `teardown()` leaves no process, mount, bridge or chain.
Standard library only (runs before any virtualenv exists).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "mlrollout-node"
BRIDGE = "mlrcni0"
POD_CIDR = "10.88.0.0/16"
NODE_IP = "10.88.0.1"  # the bridge's gateway address: the node's InternalIP
SERVICE_CIDR = "10.96.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
KWOK_POD_CIDR = "10.244.0.0/16"  # kwok's fake pod addresses: never routable
CLUSTER_DOMAIN = "cluster.local"
# Pods that should run for real tolerate this taint and select this label; nothing else lands here.
TAINT_KEY = "mlrollout.io/real-node"
NODE_LABEL = "mlrollout.io/node"
ISOLATE_CHAIN = "MLROLLOUT-ISOLATE"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
RUN = Path("/run/mlrollout")  # short paths: unix sockets are limited to 108 bytes
CONTAINERD_SOCK = RUN / "containerd.sock"
CONTAINERD_STATE = RUN / "containerd"
RUNC_ROOT = RUN / "runc"
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
COMPONENTS = ("containerd", "kubelet", "kube-proxy")


class NodeError(RuntimeError):
    """The real node could not be set up; the message says what and why."""


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlrollout"


def containerd_root() -> Path:
    """Images and snapshots persist across runs (images are imported once per content change)."""
    return cache_root() / "node" / "containerd"


def run(*argv: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, input=input, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def missing_prerequisites() -> list[str]:
    """What the machine lacks for a real node (empty when it has everything)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (containerd, kubelet and the bridge network need it)")
    for tool in ("containerd", "runc", "iptables", "conntrack", "ip", "ctr"):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` (hack/install-system-deps.sh installs it)")
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("CNI plugins in /usr/lib/cni (Debian containernetworking-plugins)")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        missing.append("the kernel's br_netfilter (Service traffic between pods on one bridge)")
    return missing


# --------------------------------------------------------------------------- configuration texts
def containerd_config(cni_conf_dir: Path) -> str:
    return f"""version = 2
root = "{containerd_root()}"
state = "{CONTAINERD_STATE}"
[grpc]
  address = "{CONTAINERD_SOCK}"
[ttrpc]
  address = "{RUN / "containerd.ttrpc.sock"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{containerd_root() / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This sandbox lacks CAP_SYS_RESOURCE: the CRI's oom_score_adj of -998 would fail runc create.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{RUNC_ROOT}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
"""


def cni_conflist(ipam_dir: Path) -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "mlrollout",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    # No masquerade: pod traffic has nowhere to go but this machine's own addresses.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(ipam_dir),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                # dockerd sets FORWARD's policy to DROP; the firewall plugin accepts the pods' traffic.
                {"type": "firewall", "backend": "iptables"},
            ],
        },
        indent=2,
    )


def kubelet_config(node: NodePaths, port: int, healthz_port: int, max_pods: int = 60) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(node.pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(node.pki / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(node.ca)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",  # matches containerd's SystemdCgroup = false; PID 1 is not systemd
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
        # Images cannot be pulled again here, and containerd 1.6 cannot pin them: never collect.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
            "imagefs.inodesFree": "0%",
        },
        "maxPods": max_pods,
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(node.root / "resolv.conf"),
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "containerLogMaxSize": "5Mi",
        "containerLogMaxFiles": 2,
    }
    return json.dumps(config, indent=2)


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> str:
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",  # IPVS is not in this kernel
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            # NodePorts only on the bridge address, never on the machine's outside address.
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # This sandbox may not write the conntrack sysctls: keep kube-proxy from trying.
            "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
        },
        indent=2,
    )


@dataclass(frozen=True)
class NodePaths:
    """Where one cluster's node keeps its configuration and kubelet state."""

    root: Path  # <cluster state>/node
    ca: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"


# --------------------------------------------------------------------------- one node per machine
@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    RUN.mkdir(parents=True, exist_ok=True)
    with (RUN / "node.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


OWNER = RUN / "owner.json"


def _owner() -> dict[str, object] | None:
    try:
        data = json.loads(OWNER.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def claim(state: Path, owner_pid: int) -> None:
    """Take the machine's one real node for `state`; recover it when its previous owner is gone."""
    with _machine_lock():
        owner = _owner()
        if owner and owner.get("state") != str(state) and _pid_alive(owner.get("pid")):
            other = owner.get("state")
            raise NodeError(
                f"the machine's real node belongs to the cluster in {other} (pid {owner.get('pid')}); "
                f"stop it first: hack/local-cluster down --state {other}"
            )
        clear_leftovers(Path(str(owner["state"])) / "node" if owner and owner.get("state") else None)
        OWNER.write_text(json.dumps({"state": str(state), "pid": owner_pid}))


def owned_by_other(state: Path) -> bool:
    """Whether a live cluster other than `state` holds the machine's real node."""
    owner = _owner()
    return bool(owner and owner.get("state") != str(state) and _pid_alive(owner.get("pid")))


def release(state: Path) -> None:
    with _machine_lock():
        owner = _owner()
        if owner and owner.get("state") == str(state):
            OWNER.unlink(missing_ok=True)


def update_owner_pid(state: Path, pid: int) -> None:
    with _machine_lock():
        owner = _owner()
        if owner and owner.get("state") == str(state):
            OWNER.write_text(json.dumps({"state": str(state), "pid": pid}))


# --------------------------------------------------------------------------- network
def _ip(*args: str, check: bool = True) -> str:
    return run("ip", *args, check=check)


def setup_network() -> None:
    for key, value in (("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1")):
        Path("/proc/sys", *key.split(".")).write_text(value)
    # The bridge exists before any pod, so the apiserver can listen on its gateway address at once.
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        _ip("link", "add", BRIDGE, "type", "bridge")
    if f"{NODE_IP}/" not in _ip("-4", "addr", "show", "dev", BRIDGE):
        _ip("addr", "add", f"{NODE_IP}/16", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    # Service and kwok addresses never leave by the default route: unknown ones fail on the bridge.
    _ip("route", "replace", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP)
    _ip("route", "replace", "blackhole", KWOK_POD_CIDR)
    run("iptables", "-w", "-N", ISOLATE_CHAIN, check=False)
    run("iptables", "-w", "-F", ISOLATE_CHAIN)
    # Pod traffic may only be forwarded back onto the bridge (pod to pod, pod to Service).
    run("iptables", "-w", "-A", ISOLATE_CHAIN, "-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP")
    if not _rule_exists():
        run("iptables", "-w", "-I", "FORWARD", "1", "-j", ISOLATE_CHAIN)
    run("mount", "--make-rshared", "/")


def _rule_exists() -> bool:
    return (
        subprocess.run(
            ["iptables", "-w", "-C", "FORWARD", "-j", ISOLATE_CHAIN], capture_output=True, check=False
        ).returncode
        == 0
    )


def teardown_network() -> None:
    _ip("route", "del", SERVICE_CIDR, check=False)
    _ip("route", "del", "blackhole", KWOK_POD_CIDR, check=False)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _ip("link", "del", BRIDGE, check=False)
    while _rule_exists():
        run("iptables", "-w", "-D", "FORWARD", "-j", ISOLATE_CHAIN, check=False)
    run("iptables", "-w", "-F", ISOLATE_CHAIN, check=False)
    run("iptables", "-w", "-X", ISOLATE_CHAIN, check=False)
    _remove_cni_chains()


def _remove_cni_chains() -> None:
    """Chains the node's parts leave behind (CNI-* of the firewall/portmap plugins, KUBE-* of the
    kubelet, e.g. KUBE-FIREWALL, and whatever `kube-proxy --cleanup` missed), with the jumps to them."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            rules = run(tool, "-w", "-t", table, "-S", check=False).splitlines()
            ours = [m.group(1) for r in rules if (m := re.match(r"-N ((?:CNI|KUBE)-\S+)", r))]
            for rule in rules:
                parts = shlex.split(rule)
                if (
                    parts[:1] == ["-A"]
                    and parts[1] not in ours
                    and any(parts[i] in ("-j", "-g") and parts[i + 1] in ours for i in range(len(parts) - 1))
                ):
                    run(tool, "-w", "-t", table, "-D", *parts[1:], check=False)
            for chain in ours:
                run(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in ours:
                run(tool, "-w", "-t", table, "-X", chain, check=False)


# --------------------------------------------------------------------------- leftovers
def _mounts_under(prefixes: list[Path]) -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
                points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(prefixes: list[Path]) -> None:
    for _ in range(3):
        points = _mounts_under(prefixes)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def kill_containers() -> None:
    """Every container our runc root knows, then the shims of our containerd socket."""
    for ns_root in sorted(RUNC_ROOT.glob("*")) if RUNC_ROOT.exists() else []:
        ids = run("runc", "--root", str(ns_root), "list", "-q", check=False).split()
        for cid in ids:
            run("runc", "--root", str(ns_root), "kill", cid, "KILL", check=False)
        for cid in ids:
            run("runc", "--root", str(ns_root), "delete", "--force", cid, check=False)
    for pid in _pids_matching(str(CONTAINERD_SOCK)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def purge_containers() -> int:
    """Remove every container (pods' sandboxes included) from the persistent containerd's metadata,
    keeping its images. Left there, the kubelet would garbage-collect a previous run's sandboxes a
    minute into the next one, and their CNI DEL would remove the firewall rules of new pods that
    were given the same addresses. Needs containerd running; returns how many were removed."""
    for task in ctr("tasks", "ls", "-q", check=False).split():
        ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        ctr("tasks", "delete", "--force", task, check=False)
    ids = ctr("containers", "ls", "-q", check=False).split()
    for cid in ids:
        ctr("containers", "rm", cid, check=False)
    return len(ids)


def _pids_matching(needle: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and int(proc.name) != os.getpid():
            pids.append(int(proc.name))
    return pids


def stop_pids(pids: list[int], timeout: float = 10) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def clear_leftovers(old_node_root: Path | None, kube_proxy: Path | None = None) -> None:
    """Whatever a previous (possibly crashed) run of the node left: processes, mounts, network."""
    # kubelet, kube-proxy and containerd of an earlier run name its node directory on their command line.
    if old_node_root is not None:
        stop_pids(_pids_matching(str(old_node_root)))
    kill_containers()
    stop_pids([p for p in _pids_matching(str(CONTAINERD_SOCK)) if _is_containerd(p)])
    prefixes = [CONTAINERD_STATE, RUNC_ROOT, containerd_root()]
    if old_node_root is not None:
        prefixes.append(old_node_root)
    unmount_all(prefixes)
    for netns_dir in NETNS_DIRS:
        for ns in netns_dir.glob("cni-*") if netns_dir.exists() else []:
            subprocess.run(["umount", str(ns)], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                ns.unlink()
    if kube_proxy is not None and kube_proxy.exists():
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, check=False, timeout=60)
    teardown_network()
    for path in (CONTAINERD_STATE, RUNC_ROOT):
        shutil.rmtree(path, ignore_errors=True)
    if old_node_root is not None:
        shutil.rmtree(old_node_root / "cni" / "ipam", ignore_errors=True)


def _is_containerd(pid: int) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return exe.endswith("/containerd")


def ctr(*args: str, check: bool = True, timeout: float = 600, input_file: Path | None = None) -> str:
    argv = ["ctr", "--address", str(CONTAINERD_SOCK), "--namespace", "k8s.io", *args]
    if input_file is None:
        return run(*argv, check=check, timeout=timeout)
    with input_file.open("rb") as fh:
        proc = subprocess.run(argv, stdin=fh, capture_output=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise NodeError(f"ctr {' '.join(args)} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout.decode(errors="replace")


# --------------------------------------------------------------------------- credentials
def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str, *, name: str = "local") -> str:
    """A kubeconfig with one cluster, one client-certificate user and one context named `name`."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
            "current-context": name,
        },
        indent=2,
    )


# name -> (subject, extensions): what the node's components present and accept.
NODE_CERTS = {
    # The Node authorizer and NodeRestriction know a kubelet by this identity.
    "node": (f"/O=system:nodes/CN=system:node:{NODE_NAME}", "extendedKeyUsage=clientAuth\n"),
    # The kubelet's serving certificate, verified by the apiserver (--kubelet-certificate-authority).
    "kubelet": (
        f"/CN={NODE_NAME}",
        f"subjectAltName=IP:{NODE_IP},DNS:{NODE_NAME}\nextendedKeyUsage=serverAuth\n",
    ),
    # Bound to the built-in ClusterRole system:node-proxier.
    "kube-proxy": ("/CN=system:kube-proxy", "extendedKeyUsage=clientAuth\n"),
}


def node_pki(paths: NodePaths, sign: object) -> None:
    """Certificates for the node, signed by the cluster CA through `sign(dir, name, subject, ext)`."""
    paths.pki.mkdir(parents=True, exist_ok=True)
    for name, (subject, ext) in NODE_CERTS.items():
        if not (paths.pki / f"{name}.crt").exists():
            sign(paths.pki, name, subject, ext)  # type: ignore[operator]


@dataclass(frozen=True)
class NodePorts:
    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int


def write_configs(paths: NodePaths, server: str, ports: NodePorts) -> None:
    for d in (paths.root, paths.kubelet_dir, paths.cni_conf_dir, paths.ipam_dir):
        d.mkdir(parents=True, exist_ok=True)
    (paths.root / "containerd.toml").write_text(containerd_config(paths.cni_conf_dir))
    for old in paths.cni_conf_dir.glob("*"):
        old.unlink()
    (paths.cni_conf_dir / "10-mlrollout.conflist").write_text(cni_conflist(paths.ipam_dir))
    (paths.root / "resolv.conf").write_text("nameserver 127.0.0.1\n")  # pods never ask outside
    (paths.root / "kubelet.json").write_text(kubelet_config(paths, ports.kubelet, ports.kubelet_healthz))
    pki = paths.pki
    (paths.root / "kubelet.kubeconfig").write_text(
        kubeconfig(server, paths.ca, pki / "node.crt", pki / "node.key", f"system:node:{NODE_NAME}")
    )
    (paths.root / "kube-proxy.kubeconfig").write_text(
        kubeconfig(server, paths.ca, pki / "kube-proxy.crt", pki / "kube-proxy.key", "system:kube-proxy")
    )
    (paths.root / "kube-proxy.json").write_text(
        kube_proxy_config(paths.root / "kube-proxy.kubeconfig", ports.proxy_healthz, ports.proxy_metrics)
    )


def containerd_argv(paths: NodePaths) -> list[str]:
    return [shutil.which("containerd") or "containerd", "--config", str(paths.root / "containerd.toml")]


def kubelet_argv(bin_dir: Path, paths: NodePaths) -> list[str]:
    return [
        str(bin_dir / "kubelet"),
        f"--config={paths.root / 'kubelet.json'}",
        f"--kubeconfig={paths.root / 'kubelet.kubeconfig'}",
        f"--root-dir={paths.kubelet_dir}",
        f"--cert-dir={paths.pki}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        f"--node-labels={NODE_LABEL}=real",
        "--v=1",
    ]


def kube_proxy_argv(bin_dir: Path, paths: NodePaths) -> list[str]:
    return [str(bin_dir / "kube-proxy"), f"--config={paths.root / 'kube-proxy.json'}", "--v=1"]


def containerd_answers() -> bool:
    if not CONTAINERD_SOCK.exists():
        return False
    return (
        subprocess.run(
            ["ctr", "--address", str(CONTAINERD_SOCK), "version"],
            capture_output=True,
            check=False,
            timeout=10,
        ).returncode
        == 0
    )


def cri_ready(log: Path) -> bool:
    """Whether the containerd started last (the log's last spawn marker, see LocalCluster._spawn) has
    finished its CRI initialisation. Its socket answers `ctr` at once, but the CRI service recovers
    every known container and image first (seconds to tens of seconds on a large image store) and
    until then answers "server is not initialized yet", which makes kubelet exit at start."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return False
    return 'msg="Start streaming server"' in text[text.rfind("\n--- ") + 1 :]


def free_port_on(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def dns_manifests(image: str) -> str:
    """CoreDNS in kube-system on the real node, answering for cluster.local at DNS_SERVICE_IP."""
    corefile = f""".:53 {{
    errors
    health {{
        lameduck 3s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    reload
}}
"""
    labels = {"k8s-app": "kube-dns"}
    objects: list[dict[str, object]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-cluster-critical",
                        "nodeSelector": {NODE_LABEL: "real"},
                        "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 2,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                    "failureThreshold": 5,
                                },
                                "resources": {
                                    "requests": {"cpu": "20m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                                },
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/coredns", "readOnly": True}
                                ],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]
    return "\n---\n".join(json.dumps(o) for o in objects)


def host_service(name: str, namespace: str, port: int, target_port: int) -> str:
    """A Service without selector whose one endpoint is a host process on NODE_IP (e.g. MLflow)."""
    objects: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-host",
                "namespace": namespace,
                "labels": {
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": "mlrollout-local",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": target_port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
        },
    ]
    return "\n---\n".join(json.dumps(o) for o in objects)

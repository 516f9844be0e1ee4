"""The pieces of the local stack that run on its real kubelet node, shared by `make demo`
(hack/demo.py) and the real-pod tests (tests/realnode): one copy, so the demo shows exactly what
the tests check.

- `HostProcess`: a host server known by a pid file (the demo's stack outlives the script that
  started it; a test session stops its own).
- `node_mlflow`: MLflow serving its artifacts on the node's bridge, behind the Service
  mlflow.mlflow:5000, so pods load models by DNS as they would from a cluster's MLflow.
- `KubePrometheus`: Prometheus 3 with the scrape job manifests/monitoring ships, discovering pods
  through the Kubernetes API, behind prometheus.monitoring:9090.
- `install_operator`: `kubectl apply -k` of a kustomization over manifests/overlays/local that pins
  the imported operator image.
- `real_namespace_manifest`: a namespace whose pods admission places on the real node.
- `LoadJob` / `LoadResult`: locust (benchmarks/load/locustfile.py) in a Job pod calling a Service,
  and what it counted per model version and status.

Errors are `StackError` with the reason; callers decide what a missing component means (the tests
fail under CI=true, the demo stops with the message).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import launch
import real_node
from local_cluster import LocalCluster, log_tail

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class StackError(RuntimeError):
    """A stack component could not be started or did not answer; the message says why."""


def poll(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """`probe()` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(max(1, int(timeout / every) + 1)):
        found = probe()
        if found:
            return found
        if time.monotonic() >= deadline:
            break
        time.sleep(every)
    raise StackError(f"{what}: not within {timeout:.0f}s")


def kubectl_json(cluster: LocalCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def apply(cluster: LocalCluster, *objects: Mapping[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))


# --------------------------------------------------------------------------- host processes
class HostProcess:
    """A server started in its own session whose pid and port live in `rundir/NAME.json`: it
    outlives the script that started it, and `stop()` from any later shell ends its whole process
    group. A process started by this object is also reaped by it (a test session's children)."""

    def __init__(self, name: str, rundir: Path, log: Path) -> None:
        self.name, self.log = name, log
        self.state_file = rundir / f"{name}.json"
        self._child: subprocess.Popen[bytes] | None = None

    def _recorded(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def pid(self) -> int | None:
        """The recorded pid while that process runs (not a zombie, not a reused pid)."""
        if self._child is not None:
            return self._child.pid if self._child.poll() is None else None
        rec = self._recorded()
        pid = rec.get("pid")
        if not isinstance(pid, int):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return None
        return pid if state != "Z" and str(rec.get("program", "")).encode() in cmdline else None

    @property
    def port(self) -> int | None:
        port = self._recorded().get("port")
        return port if self.pid and isinstance(port, int) else None

    def start(
        self, argv: Sequence[str], port: int, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            self._child = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
            )  # fmt: skip
        record = {"pid": self._child.pid, "port": port, "program": Path(argv[0]).name}
        self.state_file.write_text(json.dumps(record))

    def wait_http(self, url: str, timeout: float) -> None:
        """Until `url` answers 200; StackError with the log tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.pid is None:
                raise StackError(
                    f"{self.name} exited before {url} answered; log {self.log}:\n{log_tail(self.log)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise StackError(f"{self.name}: {url} not answering within {timeout:.0f}s ({last}); log {self.log}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM its process group, SIGKILL what is left after `timeout`; forget it."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.pid is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # workers that outlived their leader go too
        if self._child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=10)
        self.state_file.unlink(missing_ok=True)


def _ensure_host_server(proc: HostProcess, argv_for: Callable[[int], Sequence[str]], **start: Any) -> int:
    """The port of `proc`, started on a free port of the node's bridge unless it already runs."""
    port = proc.port
    if port is None:
        port = real_node.free_port_on(real_node.NODE_IP)
        proc.start(argv_for(port), port, **start)
    return port


def publish(cluster: LocalCluster, name: str, namespace: str, service_port: int, port: int) -> None:
    """The selectorless Service `name.namespace:service_port` whose endpoint is NODE_IP:port."""
    manifest = real_node.host_service(name, namespace, service_port, port)
    cluster.kubectl("apply", "-f", "-", input=manifest)


# --------------------------------------------------------------------------- MLflow
MLFLOW_NAMESPACE = "mlflow"
MLFLOW_SERVICE_PORT = 5000
IN_CLUSTER_MLFLOW = f"http://mlflow.{MLFLOW_NAMESPACE}:{MLFLOW_SERVICE_PORT}"


@dataclass
class NodeMlflow:
    tracking_uri: str  # from the host (models are registered through it)
    in_cluster_uri: str  # from pods, by the Service's DNS name
    process: HostProcess
    artifact_root: Path  # where the server keeps what mlflow-artifacts:/ URIs name


def node_mlflow(cluster: LocalCluster, root: Path, log: Path, timeout: float = 120) -> NodeMlflow:
    """An MLflow server that serves its artifacts, on the node's bridge address, behind the Service
    mlflow.mlflow:5000; the one a previous call started from `root` when it still runs."""
    proc = HostProcess("mlflow", root, log)
    port = _ensure_host_server(
        proc,
        lambda p: launch.mlflow_artifact_server_argv(root, real_node.NODE_IP, p),
        env={**os.environ, "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"},
    )
    uri = f"http://{real_node.NODE_IP}:{port}"
    try:
        proc.wait_http(f"{uri}/health", timeout)
    except StackError:
        proc.stop()
        raise
    publish(cluster, "mlflow", MLFLOW_NAMESPACE, MLFLOW_SERVICE_PORT, port)
    return NodeMlflow(uri, IN_CLUSTER_MLFLOW, proc, root / "artifacts")


# --------------------------------------------------------------------------- Prometheus
SHIPPED_SCRAPE_CONFIG = ROOT / "manifests" / "monitoring" / "prometheus-scrape-config.yaml"
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_SERVICE_PORT = 9090


def scrape_config(kubeconfig: Path, interval: str) -> dict[str, Any]:
    """The shipped scrape jobs; only the interval and the discovery credentials (the admin
    kubeconfig: this Prometheus runs outside the cluster) are set here."""
    import yaml

    jobs = yaml.safe_load(SHIPPED_SCRAPE_CONFIG.read_text())
    for job in jobs:
        job["scrape_interval"] = interval
        job["scrape_timeout"] = interval
        for sd in job.get("kubernetes_sd_configs", []):
            sd["kubeconfig_file"] = str(kubeconfig)
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs}


class KubePrometheus:
    """Prometheus discovering the serving pods through the Kubernetes API, with the scrape job that
    manifests/monitoring ships: a host process on the node's bridge address behind the Service
    prometheus.monitoring:9090, so the installed operator's analysis queries it by DNS as it would
    in a cluster. With a `workdir` whose server still runs, that server is used."""

    def __init__(
        self, kubeconfig: Path, log: Path, interval: str = "2s", workdir: Path | None = None
    ) -> None:
        from prometheus_build import PrometheusBuildError, build_prometheus

        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mlrollout-kube-prometheus-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = HostProcess("prometheus", self.workdir, log)
        config = self.workdir / "prometheus.yml"

        def argv(port: int) -> list[str]:
            try:
                binary = build_prometheus() / "prometheus"
            except PrometheusBuildError as exc:
                raise StackError(
                    f"Prometheus 3 could not be built (hack/build-prometheus.sh): {exc}"
                ) from exc
            config.write_text(json.dumps(scrape_config(kubeconfig, interval), indent=2))
            return [
                str(binary), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                "--storage.tsdb.retention.time=2h", f"--web.listen-address={real_node.NODE_IP}:{port}",
            ]  # fmt: skip

        self.port = _ensure_host_server(self.proc, argv, cwd=self.workdir)
        self.url = f"http://{real_node.NODE_IP}:{self.port}"
        self.in_cluster_url = f"http://prometheus.{PROMETHEUS_NAMESPACE}:{PROMETHEUS_SERVICE_PORT}"
        self.proc.wait_http(f"{self.url}/-/ready", timeout=60)

    def service_manifest(self) -> str:
        return real_node.host_service("prometheus", PROMETHEUS_NAMESPACE, PROMETHEUS_SERVICE_PORT, self.port)

    def publish(self, cluster: LocalCluster) -> None:
        publish(cluster, "prometheus", PROMETHEUS_NAMESPACE, PROMETHEUS_SERVICE_PORT, self.port)

    def stop(self) -> None:
        self.proc.stop()


# --------------------------------------------------------------------------- the operator
OPERATOR_NAMESPACE = "mlrollout-system"


@dataclass
class InstalledOperator:
    image: str
    kustomization: Path
    namespace: str = OPERATOR_NAMESPACE

    def pods(self, cluster: LocalCluster) -> list[dict[str, Any]]:
        selector = "app.kubernetes.io/name=mlrollout-operator"
        out = cluster.kubectl("-n", self.namespace, "get", "pods", "-l", selector, "-o", "json").stdout
        return list(json.loads(out)["items"])


def installed_args(watch: str | None) -> str:
    """The base install's `kopf run` line, --all-namespaces narrowed to `watch` when given."""
    import yaml

    docs = list(yaml.safe_load_all((ROOT / "manifests" / "base" / "operator.yaml").read_text()))
    args = str(docs[0]["spec"]["template"]["spec"]["containers"][0]["args"][0])
    if "--all-namespaces" not in args:
        raise StackError(f"manifests/base/operator.yaml no longer runs --all-namespaces: {args}")
    return args if watch is None else args.replace("--all-namespaces", f"--namespace '{watch}'")


def install_kustomization(
    image_ref: str, dest: Path, *, watch: str | None = None, peering_lifetime: int | None = None
) -> Path:
    """A kustomization over manifests/overlays/local pinning the imported operator image; `watch`
    narrows the namespaces the operator serves, `peering_lifetime` (s) sets how soon a standby
    replica takes over from a dead active one."""
    name, tag = image_ref.rsplit(":", 1)
    container = "/spec/template/spec/containers/0"
    ops: list[dict[str, Any]] = []
    if watch is not None:
        ops.append({"op": "replace", "path": f"{container}/args/0", "value": installed_args(watch)})
    if peering_lifetime is not None:
        env = {"name": "MLROLLOUT_PEERING_LIFETIME", "value": str(peering_lifetime)}
        ops.append({"op": "add", "path": f"{container}/env/-", "value": env})
    patches = [{"target": {"kind": "Deployment", "name": "mlrollout-operator"}, "patch": json.dumps(ops)}]
    dest.mkdir(parents=True, exist_ok=True)
    body = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes only relative paths to other kustomizations.
        "resources": [os.path.relpath(ROOT / "manifests" / "overlays" / "local", dest)],
        "images": [{"name": "mlrollout-operator", "newName": name, "newTag": tag}],
        "patches": patches if ops else [],
    }
    (dest / "kustomization.yaml").write_text(json.dumps(body, indent=2))
    return dest


def install_operator(
    cluster: LocalCluster, image_ref: str, dest: Path, *, timeout: int = 240, **kustomize: Any
) -> InstalledOperator:
    """`kubectl apply -k` (server-side: re-applying over an earlier install is fine), then wait for
    the rollout of the operator's Deployment."""
    kustomization = install_kustomization(image_ref, dest, **kustomize)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(kustomization), timeout=180)
    op = InstalledOperator(image=image_ref, kustomization=kustomization)
    status = cluster.kubectl(
        "-n", op.namespace, "rollout", "status", "deployment/mlrollout-operator", f"--timeout={timeout}s",
        timeout=timeout + 20, check=False,
    )  # fmt: skip
    if status.returncode != 0:
        raise StackError(f"the installed operator did not roll out: {status.stderr.strip()}")
    return op


# --------------------------------------------------------------------------- namespaces
def real_namespace_manifest(name: str, labels: Mapping[str, str] | None = None) -> str:
    """A namespace whose pods are placed on the real node by admission (PodNodeSelector and
    PodTolerationRestriction), the way clusters dedicate nodes to a team."""
    toleration = [{"key": real_node.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": dict(labels or {}),
                "annotations": {
                    "scheduler.alpha.kubernetes.io/node-selector": f"{real_node.NODE_LABEL}=real",
                    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(toleration),
                },
            },
        }
    )


# --------------------------------------------------------------------------- load
SUMMARY_PREFIX = "MLROLLOUT-LOAD-SUMMARY"
STOP_FILE = "/tmp/stop-load"  # inside the load pod


@dataclass(frozen=True)
class LoadResult:
    summary: dict[str, Any]
    pod: str

    @property
    def by_version(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.summary["by_version"].items()}

    @property
    def by_status(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.summary.get("by_status", {}).items()}

    @property
    def ok(self) -> int:
        return int(self.summary["ok"])

    @property
    def failed(self) -> int:
        return int(self.summary["failed"])

    def share(self, version: str) -> float:
        return self.by_version.get(version, 0) / max(self.ok, 1)


class LoadJob:
    """locust in a Job pod calling a Service; started, then stopped (stop file) or run to its bound."""

    def __init__(
        self,
        cluster: LocalCluster,
        namespace: str,
        image: str,
        target: str,
        rows: list[dict[str, Any]],
        *,
        users: int = 4,
        max_requests: int = 0,
        seconds: int = 60,
        feedback: float = 0.0,
        new_connections: bool = True,
        wait_seconds: float = 0.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.name = f"load-{uuid.uuid4().hex[:6]}"
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": namespace},
            "data": {"rows.json": json.dumps(rows)},
        }
        args = ["--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", target]
        args += ["--only-summary", "--loglevel", "WARNING"]
        settings = {
            "MLROLLOUT_LOAD_ROWS": "/load-data/rows.json",
            "MLROLLOUT_LOAD_FEEDBACK": str(feedback),
            "MLROLLOUT_LOAD_MAX_REQUESTS": str(max_requests),
            "MLROLLOUT_LOAD_WAIT": str(wait_seconds),
            "MLROLLOUT_LOAD_STOP_FILE": STOP_FILE,
            "MLROLLOUT_LOAD_NEW_CONNECTIONS": "1" if new_connections else "0",
            **(extra_env or {}),
        }
        container = {
            "name": "locust",
            "image": image,
            "imagePullPolicy": "Never",
            "args": args,
            "env": [{"name": k, "value": v} for k, v in settings.items()],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "volumeMounts": [{"name": "rows", "mountPath": "/load-data"}],
        }
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.name, "namespace": namespace},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": seconds + 120,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "mlrollout-load", "job": self.name}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [container],
                        "volumes": [{"name": "rows", "configMap": {"name": self.name}}],
                    },
                },
            },
        }
        apply(cluster, config, job)

    def _get(self, *args: str) -> Any:
        return kubectl_json(self.cluster, "-n", self.namespace, "get", *args)

    def pod(self) -> str:
        def find() -> str | None:
            pods = self._get("pods", "-l", f"job={self.name}")["items"]
            return str(pods[0]["metadata"]["name"]) if pods else None

        return poll(f"the load pod of job {self.name}", find, 60)

    def wait_running(self, timeout: float = 120) -> None:
        poll(
            f"load pod {self.name} running",
            lambda: self._get("pod", self.pod())["status"].get("phase") == "Running",
            timeout,
        )

    def stop(self) -> None:
        self.cluster.kubectl("-n", self.namespace, "exec", self.pod(), "--", "touch", STOP_FILE, check=False)

    def result(self, timeout: float = 300) -> LoadResult:
        def finished() -> bool:
            status = self._get("job", self.name).get("status", {})
            return bool(status.get("succeeded") or status.get("failed"))

        poll(f"load job {self.name} to finish", finished, timeout)
        pod = self.pod()
        logs = self.cluster.kubectl("-n", self.namespace, "logs", pod).stdout
        for line in logs.splitlines():
            if line.startswith(SUMMARY_PREFIX):
                return LoadResult(json.loads(line[len(SUMMARY_PREFIX) :]), pod)
        raise StackError(f"load pod {pod} printed no summary; its log:\n{logs[-3000:]}")

"""mlrollout's operator against Argo Rollouts' controller, side by side on one local cluster.

Same cluster (hack/local_cluster.py: real control plane, kwok nodes), same harness, same work, one
controller at a time, interleaved: N objects, each with 2 replicas and the steps setWeight 50 /
pause / setWeight 100; a Rollout whose pod template changes against a ModelDeployment whose model
version changes (mlrollout also resolves the version in a real `mlflow server`; Argo has no registry).

    .venv/bin/python -P benchmarks/operator/bench_peers.py --count 100 --count 500 --rounds 1

Each run, in a fresh namespace, with the controller started fresh:
  1. create N objects at version 1, wait until every one is settled (Argo: Healthy; mlrollout: Promoted);
  2. change all N (rate-limited, like a rollout wave): change -> canary workload created (Argo: the new
     ReplicaSet; mlrollout: the canary Deployment), change -> the 50% step reached (paused at step 1);
  3. abort all N: abort -> canary workload at 0 replicas (or deleted).
Latencies are per object from the harness's own watches (local monotonic clock); settle is the first
change to the last object done. The controller's RSS is sampled every 0.5 s, its CPU seconds come from
/proc (utime + stime) per phase. The registry's CPU (mlflow server) is reported on its own line.
Argo runs with its shipped defaults (10 rollout workers, client QPS 40 / burst 80), mlrollout with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "hack"), str(ROOT / "tests")]

import launch  # noqa: E402
from bench_operator import WorkLogs, pct, register_versions, rss_mb, start_mlflow  # noqa: E402
from bench_operator import manifest as md_manifest  # noqa: E402
from local_cluster import LocalCluster  # noqa: E402
from support.procs import ManagedProcess, free_port  # noqa: E402

ARGO_BUILD = ROOT / "hack" / "build-argo-rollouts.sh"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
Status = dict[str, Any]
REPLICAS = 2


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (and its reaped children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime (fields 14-17)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """A process and its live descendants (mlflow server runs gunicorn workers)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            total += tree_cpu_seconds(int(c))
    return total


@dataclass
class Controller:
    """What differs between the two: the object, its change, abort, workload kind and phase tests."""

    label: str
    group: str
    version: str
    plural: str
    workload: str  # "deployments" or "replicasets"
    manifest: Callable[[str, str], dict[str, Any]]
    change: Callable[[str], dict[str, Any]]
    abort: Callable[[], dict[str, Any]]
    abort_status: bool  # the abort is a patch of the status subresource
    settled: Callable[[Status], bool]
    at_half: Callable[[Status], bool]
    start: Callable[[Path, Path, str], ManagedProcess]
    crds: list[Path] = field(default_factory=list)
    # What the harness creates beside each object so that both serve traffic the same way: a
    # Service over the Rollout's pods (mlrollout makes its own per ModelDeployment)
    companion: Callable[[str], dict[str, Any]] | None = None


def argo_containers(version: str, like_ours: bool, pod: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The Rollout's container: bare, or (`like_ours`) exactly the one mlrollout's pods run, with
    probes, env, volume mounts, security context and preStop sleep, so only the controller differs."""
    if not like_ours:
        return [
            {
                "name": "serve",
                "image": "mlrollout/serving:bench",
                "env": [{"name": "MODEL_VERSION", "value": version}],
            }
        ]
    container = dict((pod or ours_pod_spec(version))["containers"][0])
    container["env"] = [*container["env"], {"name": "MODEL_VERSION", "value": version}]
    return [container]


def ours_pod_spec(version: str) -> dict[str, Any]:
    """The pod spec mlrollout's operator builds for the bench's ModelDeployment at `version`."""
    from mlrollout.operator import children
    from mlrollout.operator.planner.work import DesiredDeployment
    from mlrollout.operator.spec import parse_spec

    md = {**md_manifest("bench", version), "metadata": {"name": "bench", "namespace": "bench", "uid": "u"}}
    spec = parse_spec(md["spec"])
    want = DesiredDeployment("bench-v", version, "file:///model", REPLICAS, "stable", revision="r")
    pod: dict[str, Any] = children.deployment(md, spec, want)["spec"]["template"]["spec"]
    return pod


def argo_manifest(name: str, version: str, like_ours: bool = False) -> dict[str, Any]:
    labels = {"app": name}
    pod: dict[str, Any] = dict(ours_pod_spec(version)) if like_ours else {}
    pod["containers"] = argo_containers(version, like_ours, pod)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}},
        },
    }


def argo_service(name: str) -> dict[str, Any]:
    """The Service an application served through a Rollout has (Argo's basic canary example has
    one): the same shape as mlrollout's, so the endpoint controller follows the same pods for both."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]},
    }


def argo_change(version: str, like_ours: bool = False) -> dict[str, Any]:
    # A merge patch replaces the container list whole: send the whole container.
    return {"spec": {"template": {"spec": {"containers": argo_containers(version, like_ours)}}}}


def argo_build() -> Path:
    """Argo Rollouts' cache dir (bin/, crds/), built first if this machine has none (minutes, once)."""
    out = subprocess.run(["bash", str(ARGO_BUILD)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.split()[-1])


def start_argo(kubeconfig: Path, work: Path, _tracking_uri: str) -> ManagedProcess:
    built = argo_build()
    healthz, metrics = free_port(), free_port()
    argv = [
        str(built / "bin" / "rollouts-controller"),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--healthzPort={healthz}",
        f"--metricsPort={metrics}",
        "--loglevel=warn",
    ]
    proc = ManagedProcess.start("argo-rollouts", argv, env=dict(os.environ), cwd=work, logs=WorkLogs(work))
    proc.wait_http(f"http://127.0.0.1:{healthz}/healthz", timeout=60)
    return proc


def start_mlrollout(kubeconfig: Path, work: Path, tracking_uri: str) -> ManagedProcess:
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "MLROLLOUT_TRACKING_URI": tracking_uri,
        "MLROLLOUT_RESYNC_SECONDS": "120",
    }
    port = free_port()
    proc = ManagedProcess.start(
        "mlrollout", launch.operator_argv(port), env=env, cwd=ROOT, logs=WorkLogs(work)
    )
    proc.wait_http(launch.liveness_url(port), timeout=60)
    return proc


def controllers(*, argo_service_too: bool = True, argo_pods_like_ours: bool = False) -> dict[str, Controller]:
    # Built (once, cached) before the cluster starts: a fresh machine has neither binary nor CRDs yet.
    argo_dir = argo_build()
    argo_crds = sorted((argo_dir / "crds").glob("*.yaml"))
    if not argo_crds:
        raise SystemExit(f"no Argo Rollouts CRDs under {argo_dir}/crds: see {ARGO_BUILD}")
    return {
        "argo": Controller(
            label=f"Argo Rollouts {_argo_version()}",
            group="argoproj.io",
            version="v1alpha1",
            plural="rollouts",
            workload="replicasets",
            manifest=lambda name, version: argo_manifest(name, version, argo_pods_like_ours),
            change=lambda version: argo_change(version, argo_pods_like_ours),
            abort=lambda: {"status": {"abort": True}},
            abort_status=True,
            settled=lambda s: s.get("phase") == "Healthy",
            at_half=lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
            start=start_argo,
            crds=argo_crds,
            companion=argo_service if argo_service_too else None,
        ),
        "mlrollout": Controller(
            label="mlrollout",
            group="mlrollout.io",
            version="v1alpha1",
            plural="modeldeployments",
            workload="deployments",
            manifest=md_manifest,
            change=lambda version: {"spec": {"model": {"version": version}}},
            abort=lambda: {
                "spec": {"intent": {"id": os.urandom(6).hex(), "abort": True, "promote": None, "undo": None}}
            },
            abort_status=False,
            settled=lambda s: s.get("phase") == "Promoted",
            at_half=lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
            start=start_mlrollout,
            crds=[ROOT / "crds" / "modeldeployment.yaml"],
        ),
    }


def _argo_version() -> str:
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("ARGO_ROLLOUTS_VERSION="):
            return line.split("=", 1)[1]
    return "?"


@dataclass
class PodSeen:
    """One pod's path as the harness saw it: created (first event), bound to a node, first Ready."""

    name: str
    replica_set: str
    added: float
    bound: float | None = None
    ready: float | None = None


@dataclass
class Seen:
    """What the harness's watches saw, with local monotonic times."""

    workload_added: dict[str, float] = field(default_factory=dict)
    workload_zero: dict[str, float] = field(default_factory=dict)
    workload_full: dict[str, float] = field(default_factory=dict)  # since when 2 of 2 pods Ready
    # The same read one level down for both: since when the workload's ReplicaSet has 2 of 2 Ready
    # (Argo's workload is that ReplicaSet; a Deployment's status repeats its ReplicaSet's a hop later)
    rs_full: dict[str, float] = field(default_factory=dict)
    rs_sized: dict[str, float] = field(default_factory=dict)  # since when that ReplicaSet's spec says 2
    # since when spec.replicas is 2: the controller's own write, before any pod of it starts
    workload_sized: dict[str, float] = field(default_factory=dict)
    rs_workload: dict[str, str] = field(default_factory=dict)  # ReplicaSet -> its Deployment
    pods: dict[str, PodSeen] = field(default_factory=dict)
    status: dict[str, Status] = field(default_factory=dict)
    # per phase: object name -> first time the phase's predicate held
    reached: dict[str, dict[str, float]] = field(default_factory=dict)
    predicates: dict[str, Callable[[Status], bool]] = field(default_factory=dict)

    def on_pod(self, kind: str, pod: dict[str, Any], now: float) -> None:
        if kind == "DELETED":
            return
        meta = pod["metadata"]
        owners = [o["name"] for o in meta.get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"]
        name = meta["name"]
        seen = self.pods.setdefault(name, PodSeen(name, owners[0] if owners else "", now))
        if (pod.get("spec") or {}).get("nodeName") and seen.bound is None:
            seen.bound = now
        conds = (pod.get("status") or {}).get("conditions") or []
        if seen.ready is None and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            seen.ready = now

    def on_status(self, name: str, status: Status, now: float) -> None:
        self.status[name] = status
        for phase, test in self.predicates.items():
            if test(status):
                self.reached[phase].setdefault(name, now)

    def expect(self, phase: str, test: Callable[[Status], bool]) -> None:
        self.reached[phase] = {}
        self.predicates[phase] = test
        for name, status in self.status.items():  # already true before the phase began does not count
            if test(status):
                self.reached[phase][name] = float("-inf")


def apiserver_writes(kubeconfig: Path) -> dict[str, int]:
    """The apiserver's count of served writes so far, by verb and resource (its /metrics), to count
    what a phase asked of it and of etcd; every client's, the node's and controllers' included."""
    text = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "get", "--raw", "/metrics"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") not in {"POST", "PUT", "PATCH", "DELETE", "APPLY"}:
            continue
        key = f"{labels['verb']} {labels.get('resource', '')}" + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        out[key] = out.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def dump_abort_pods(path: Path, namespace: str, pods: list[tuple[str, PodSeen]]) -> None:
    """The abort's new stable pods with wall-clock times, to set beside the node's own log
    (kwok_join.py): what the harness saw against when kwok patched each pod Ready."""
    wall = time.time() - time.monotonic()
    path.write_text(
        json.dumps(
            [
                {
                    "pod": f"{namespace}/{p.name}",
                    "owner": owner,
                    "added": p.added + wall,
                    "bound": None if p.bound is None else p.bound + wall,
                    "ready": None if p.ready is None else p.ready + wall,
                }
                for owner, p in pods
            ]
        )
    )


def mark(since: dict[str, float], name: str, now: float, holds: bool) -> None:
    """Keep the first time `holds` became true for name; forget it once it stops holding."""
    if holds:
        since.setdefault(name, now)
    else:
        since.pop(name, None)


class RawWatch(watch.Watch):
    """A watch whose events carry the decoded JSON only: no model classes built per event."""

    def get_return_type(self, func: object) -> str:
        return ""  # falsy: kubernetes_asyncio skips its typed deserialization


async def follow(
    stop: asyncio.Event,
    on_event: Callable[[str, dict[str, Any], float], None],
    list_fn: Any,
    *args: Any,
    typed: bool = False,
) -> None:
    """Feed every event of one watch to on_event (type, object as a dict, local time) until stop is set.

    The harness shares the 2 cores with what it measures, and kubernetes_asyncio's typed events cost a
    JSON round trip and a model tree per event (more per run for a Deployment workload, which adds a
    watch): `typed` keeps that cost only to compare with it. Each new stream resumes where the last
    ended: a fresh list would miss the deletions made between two streams (a deleted canary is never
    listed again). 410 Gone and the like start over."""

    def new() -> watch.Watch:
        return watch.Watch() if typed else RawWatch()

    w = new()
    while not stop.is_set():
        try:
            resume: dict[str, str] = {"resource_version": w.resource_version} if w.resource_version else {}
            async for ev in w.stream(list_fn, *args, timeout_seconds=60, **resume):
                on_event(ev["type"], ev["raw_object"], time.monotonic())
        except ApiException:
            w = new()
            await asyncio.sleep(0.2)
        except (TimeoutError, OSError):
            await asyncio.sleep(0.2)


def summary(lat: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(lat), 3),
        "p95": round(pct(lat, 0.95), 3),
        "max": round(max(lat), 3),
    }


@dataclass(frozen=True)
class Run:
    ctl: Controller
    count: int
    rate: float
    kubeconfig: Path
    namespace: str
    limit_s: float
    work: Path
    typed_watches: bool = False


def run_one(
    ctl: Controller, count: int, args: argparse.Namespace, kubeconfig: Path, tracking_uri: str
) -> dict[str, Any]:
    """A fresh namespace and a freshly started controller for one measured run; both gone after."""
    ns = f"peers-{ctl.plural[:4]}-{count}-{int(time.time()) % 100000}"
    kenv = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    subprocess.run(["kubectl", "create", "namespace", ns], env=kenv, check=True, capture_output=True)
    proc = ctl.start(kubeconfig, args.work, tracking_uri)
    profiler = None
    if args.py_spy and ctl.plural == "modeldeployments":  # sampled stacks of the Python operator
        out = args.work / f"py-spy-{count}.txt"
        argv = [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(proc.pid),
            "--rate",
            "50",
            "--format",
            "raw",
        ]
        profiler = subprocess.Popen([*argv, "--nonblocking", "--output", str(out)], stdout=subprocess.DEVNULL)
    try:
        run = Run(ctl, count, args.rate, kubeconfig, ns, args.limit, args.work, args.typed_watches)
        return asyncio.run(measure(run, proc))
    finally:
        # The namespace goes while its controller still runs: mlrollout's finalizers need it.
        subprocess.run(
            ["kubectl", "delete", "namespace", ns, "--wait=true", "--timeout=300s"],
            env=kenv,
            check=False,
            capture_output=True,
        )
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        proc.stop(timeout=20)


async def measure(run: Run, proc: ManagedProcess) -> dict[str, Any]:
    ctl, count, rate, ns, limit_s, work = run.ctl, run.count, run.rate, run.namespace, run.limit_s, run.work
    kubeconfig = run.kubeconfig
    await config.load_kube_config(str(kubeconfig))
    api = client.ApiClient()
    custom, apps, core = client.CustomObjectsApi(api), client.AppsV1Api(api), client.CoreV1Api(api)
    seen = Seen()
    stop = asyncio.Event()
    peak = [0.0]
    list_workloads = (
        apps.list_namespaced_deployment if ctl.workload == "deployments" else apps.list_namespaced_replica_set
    )

    def on_workload(kind: str, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        replicas = (obj.get("spec") or {}).get("replicas") or 0
        seen.workload_added.setdefault(name, now)
        if kind == "DELETED" or replicas == 0:
            seen.workload_zero.setdefault(name, now)
        else:
            seen.workload_zero.pop(name, None)
        sized = kind != "DELETED" and replicas == REPLICAS
        ready = (obj.get("status") or {}).get("readyReplicas") or 0
        mark(seen.workload_sized, name, now, sized)
        mark(seen.workload_full, name, now, sized and ready == REPLICAS)
        if ctl.workload == "replicasets":
            mark(seen.rs_sized, name, now, sized)
            mark(seen.rs_full, name, now, sized and ready == REPLICAS)

    def on_replica_set(kind: str, obj: dict[str, Any], now: float) -> None:
        """For Deployment workloads: each one's ReplicaSet, by its owner's name."""
        meta = obj["metadata"]
        owners = [o["name"] for o in meta.get("ownerReferences") or [] if o.get("kind") == "Deployment"]
        if not owners:
            return
        seen.rs_workload[meta["name"]] = owners[0]
        sized = kind != "DELETED" and (obj.get("spec") or {}).get("replicas") == REPLICAS
        ready = (obj.get("status") or {}).get("readyReplicas") or 0
        mark(seen.rs_sized, owners[0], now, sized)
        mark(seen.rs_full, owners[0], now, sized and ready == REPLICAS)

    def on_object(_kind: str, obj: dict[str, Any], now: float) -> None:
        seen.on_status(obj["metadata"]["name"], obj.get("status") or {}, now)

    typed = run.typed_watches
    watches = [
        follow(stop, on_workload, list_workloads, ns, typed=typed),
        follow(stop, on_object, custom.list_namespaced_custom_object, ctl.group, ctl.version, ns, ctl.plural),
        follow(stop, seen.on_pod, core.list_namespaced_pod, ns, typed=typed),
    ]
    if ctl.workload == "deployments":
        watches.append(follow(stop, on_replica_set, apps.list_namespaced_replica_set, ns, typed=typed))

    async def sample_rss() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(proc.pid))
            await asyncio.sleep(0.5)

    async def until(phase: str, names: list[str]) -> float:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if len(seen.reached[phase]) >= len(names):
                return max(seen.reached[phase].values())
            await asyncio.sleep(0.2)
        missing = [n for n in names if n not in seen.reached[phase]][:5]
        raise SystemExit(
            f"{ctl.label}: {phase} not reached by {missing}... within {limit_s}s; logs in {work}"
        )

    # The harness's own writes, awaited one by one: a slow round trip stretches the whole wave past
    # N / rate seconds, which then shows in "all N settled" (not in the per-object latencies).
    write_rtt: dict[str, list[float]] = {}

    async def paced(phase: str, names: list[str], act: Callable[[str], Any]) -> dict[str, float]:
        at: dict[str, float] = {}
        took = write_rtt.setdefault(phase, [])
        start = time.monotonic()
        for i, name in enumerate(names):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            at[name] = time.monotonic()
            await act(name)
            took.append(time.monotonic() - at[name])
        return at

    def patch(name: str, body: dict[str, Any], *, status: bool = False) -> Any:
        call = (
            custom.patch_namespaced_custom_object_status if status else custom.patch_namespaced_custom_object
        )
        return call(
            ctl.group, ctl.version, ns, ctl.plural, name, body, _content_type="application/merge-patch+json"
        )

    tasks = [asyncio.create_task(t) for t in [*watches, sample_rss()]]
    names = [f"md-{i:04d}" for i in range(count)]
    cpu: dict[str, float] = {}
    try:
        if ctl.companion is not None:  # all there before the clock starts: the paced creates stay one call
            for name in names:
                await core.create_namespaced_service(ns, ctl.companion(name))
        await asyncio.sleep(1.0)  # both watches listening before the first create
        rss_idle = rss_mb(proc.pid)
        c0 = cpu_seconds(proc.pid)
        seen.expect("settled", ctl.settled)

        created = await paced(
            "create",
            names,
            lambda n: custom.create_namespaced_custom_object(
                ctl.group, ctl.version, ns, ctl.plural, ctl.manifest(n, "1")
            ),
        )
        t_settled = await until("settled", names)
        c1 = cpu_seconds(proc.pid)
        before = set(seen.workload_added)
        seen.expect("half", ctl.at_half)
        changed = await paced("change", names, lambda n: patch(n, ctl.change("2")))
        t_half = await until("half", names)
        c2 = cpu_seconds(proc.pid)
        canary: dict[str, str] = {}
        stable: dict[str, str] = {}
        for name in names:
            new = [w for w in seen.workload_added if w.startswith(f"{name}-") and w not in before]
            old = [w for w in before if w.startswith(f"{name}-")]
            if len(new) != 1 or len(old) != 1:
                raise SystemExit(f"{ctl.label}: {name} has workloads {old} before and {new} after the change")
            canary[name], stable[name] = new[0], old[0]
        for w in canary.values():
            seen.workload_zero.pop(w, None)
        for w in stable.values():  # at the 50% step the stable runs 1 of 2 (both controllers)
            seen.workload_sized.pop(w, None)
            seen.rs_sized.pop(w, None)
        writes0 = apiserver_writes(kubeconfig)
        aborted = await paced("abort", names, lambda n: patch(n, ctl.abort(), status=ctl.abort_status))
        deadline = time.monotonic() + limit_s
        while any(
            canary[n] not in seen.workload_zero
            or stable[n] not in seen.workload_full
            or stable[n] not in seen.rs_full
            for n in names
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"{ctl.label}: not rolled back within {limit_s}s; logs in {work}")
            await asyncio.sleep(0.2)
        t_zero = max(seen.workload_zero[canary[n]] for n in names)
        full = {n: max(seen.workload_full[stable[n]], aborted[n]) for n in names}
        rs_full = {n: max(seen.rs_full[stable[n]], aborted[n]) for n in names}
        rs_sized = {n: max(seen.rs_sized.get(stable[n], rs_full[n]), aborted[n]) for n in names}
        sized = {n: max(seen.workload_sized.get(stable[n], full[n]), aborted[n]) for n in names}
        c3 = cpu_seconds(proc.pid)
        writes = {k: v - writes0.get(k, 0) for k, v in apiserver_writes(kubeconfig).items()}
        # The abort's new stable pods, stage by stage: which part of the control plane the time sits in
        # (ReplicaSet controller: scaled -> pod created; scheduler: -> bound; node: -> Ready).
        workload_of = (lambda rs: rs) if ctl.workload == "replicasets" else seen.rs_workload.get
        owner_of = {stable[n]: n for n in names}
        new_pods = [
            (n, p)
            for p in seen.pods.values()
            if (n := owner_of.get(workload_of(p.replica_set) or "")) and p.added >= aborted[n]
        ]
        stages = {
            "rs_sized_to_created": [p.added - rs_sized[n] for n, p in new_pods],
            "created_to_bound": [p.bound - p.added for _, p in new_pods if p.bound is not None],
            "bound_to_ready": [p.ready - p.bound for _, p in new_pods if p.ready and p.bound],
            "ready_to_rs_ready": [rs_full[n] - p.ready for n, p in new_pods if p.ready is not None],
        }
        cpu = {"create": c1 - c0, "change": c2 - c1, "abort": c3 - c2}
        dump_abort_pods(work / f"abort-pods-{ns}.json", ns, new_pods)
        return {
            "controller": ctl.label,
            "count": count,
            "change_to_canary_created_s": summary(
                [seen.workload_added[canary[n]] - changed[n] for n in names]
            ),
            "change_to_half_s": summary([seen.reached["half"][n] - changed[n] for n in names]),
            "abort_to_canary_zero_s": summary([seen.workload_zero[canary[n]] - aborted[n] for n in names]),
            "abort_to_stable_sized_s": summary([sized[n] - aborted[n] for n in names]),
            "abort_to_stable_full_s": summary([full[n] - aborted[n] for n in names]),
            "abort_to_stable_rs_sized_s": summary([rs_sized[n] - aborted[n] for n in names]),
            "abort_to_stable_rs_ready_s": summary([rs_full[n] - aborted[n] for n in names]),
            "abort_stable_pods": {"count": len(new_pods)} | {k: summary(v) for k, v in stages.items() if v},
            "create_to_settled_s": summary([seen.reached["settled"][n] - created[n] for n in names]),
            "settle_s": {
                "create": round(t_settled - min(created.values()), 1),
                "change_to_half": round(t_half - min(changed.values()), 1),
                "abort": round(max(t_zero, *full.values()) - min(aborted.values()), 1),
            },
            "harness_write_s": {k: summary(v) for k, v in write_rtt.items()},
            "wave_s": {
                k: round(max(w.values()) - min(w.values()), 1)
                for k, w in (("create", created), ("change", changed), ("abort", aborted))
            },
            "rss_mb": {
                "idle": round(rss_idle, 1),
                "peak": round(peak[0], 1),
                "end": round(rss_mb(proc.pid), 1),
            },
            "cpu_s": {k: round(v, 1) for k, v in cpu.items()} | {"total": round(sum(cpu.values()), 1)},
            # every client's writes the apiserver served from the abort's first write to all settled
            "abort_writes": {k: v for k, v in sorted(writes.items(), key=lambda kv: -kv[1]) if v > 0},
        }
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await api.close()


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--count", type=int, action="append", help="objects per run (repeatable); default 100 and 500"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds per count")
    parser.add_argument("--rate", type=float, default=20.0, help="creates / changes / aborts per second")
    parser.add_argument("--only", choices=["argo", "mlrollout"], help="run one controller (profiling)")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds each phase may take")
    parser.add_argument("--py-spy", action="store_true", help="record mlrollout's stacks (py-spy, raw)")
    parser.add_argument("--out", type=Path, help="append each run's JSON line here")
    parser.add_argument(
        "--typed-watches",
        action="store_true",
        help="the harness builds kubernetes_asyncio's model objects per event (its old, costlier way)",
    )
    parser.add_argument(
        "--no-argo-service",
        action="store_true",
        help="no Service beside each Rollout (runs before 2026-12-03 17:30 had none)",
    )
    parser.add_argument(
        "--argo-pods-like-ours",
        action="store_true",
        help="the Rollouts' pods get mlrollout's exact pod spec (probes, volumes, security context)",
    )
    args = parser.parse_args()
    counts = args.count or [100, 500]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = args.work = Path(tempfile.mkdtemp(prefix="mlrollout-peers-"))
    (work / "artifacts").mkdir()
    ctls = controllers(
        argo_service_too=not args.no_argo_service, argo_pods_like_ours=args.argo_pods_like_ours
    )
    order = [args.only] if args.only else ["argo", "mlrollout"]
    # 2 pods per object, 3 during a step (a surge), 20% headroom; kwok nodes hold 110 pods each.
    nodes = max(3, -(-max(counts) * 3 * 12 // (110 * 10)))
    cluster = LocalCluster(state=work / "cluster", nodes=nodes)
    cluster.up()
    kenv = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    mlflow, uri = start_mlflow(work)
    results: list[dict[str, Any]] = []
    try:
        register_versions(uri)
        for ctl in ctls.values():
            for crd in ctl.crds:
                subprocess.run(
                    ["kubectl", "apply", "--server-side", "-f", str(crd)],
                    env=kenv,
                    check=True,
                    capture_output=True,
                )
        subprocess.run(
            ["kubectl", "wait", "--for=condition=Established", "crd", "--all"],
            env=kenv,
            check=True,
            capture_output=True,
        )
        for count in counts:
            for r in range(args.rounds):
                for key in order if r % 2 == 0 else list(reversed(order)):
                    load_before = loadavg()
                    m0 = tree_cpu_seconds(mlflow.pid)
                    # What each controller costs the control plane too (its reads and writes load the
                    # apiserver and etcd, which every controller on the cluster then waits on).
                    plane = {c: p.pid for c, p in cluster.procs.items() if c in CONTROL_PLANE}
                    p0 = {c: cpu_seconds(pid) for c, pid in plane.items()}
                    result = run_one(ctls[key], count, args, cluster.kubeconfig, uri)
                    result |= {
                        "round": r,
                        "service_per_object": key == "mlrollout" or not args.no_argo_service,
                        "argo_pods_like_ours": args.argo_pods_like_ours,
                        "typed_watches": args.typed_watches,
                        "load_before": load_before,
                        "load_after": loadavg(),
                        "registry_cpu_s": round(tree_cpu_seconds(mlflow.pid) - m0, 1),
                        "control_plane_cpu_s": {
                            c: round(cpu_seconds(pid) - p0[c], 1) for c, pid in plane.items()
                        },
                    }
                    results.append(result)
                    print(json.dumps(result), flush=True)
                    if args.out:
                        with args.out.open("a") as f:
                            f.write(json.dumps(result) + "\n")
    finally:
        mlflow.stop()
        cluster.down()
    print(f"logs: {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Operator benchmark: apply -> Deployment created latency, settle time and RSS for N ModelDeployments.

Everything is real: a local control plane (hack/local_cluster.py, kwok nodes), an `mlflow server`
(sqlite) with one registered model with two versions, and the operator as its own process.

    .venv/bin/python benchmarks/operator/bench_operator.py --count 100 [--kubeconfig PATH]

Phases (all ModelDeployments in one namespace, created/patched at a bounded rate):
  1. create N ModelDeployments at version 1 -> latency until each stable Deployment exists;
     settle = first create until all N report phase Promoted;
  2. patch all N to version 2 (steps: setWeight 50, pause) -> latency until each canary
     Deployment exists; settle = first patch until all N are Paused at the 50% step.
Operator RSS is sampled from /proc every 0.5 s (peak and final).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
sys.path.insert(0, str(ROOT / "tests"))

import launch  # noqa: E402
from local_cluster import LocalCluster  # noqa: E402
from support.procs import ManagedProcess, free_port  # noqa: E402

GROUP, VERSION, PLURAL = "mlrollout.io", "v1alpha1", "modeldeployments"
MODEL = "bench-model"
NS = "bench"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class WorkLogs:
    """Each process logs to <work>/<name>.log."""

    work: Path

    def path(self, name: str) -> Path:
        return self.work / f"{name}.log"


def start_mlflow(work: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    proc = ManagedProcess.start(
        "mlflow", launch.mlflow_server_argv(work, port, workers=2), logs=WorkLogs(work)
    )
    uri = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{uri}/health", timeout=120)
    return proc, uri


def register_versions(uri: str) -> None:
    """Two versions with an f1_score on their source runs (no training needed for a benchmark)."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.create_experiment("bench")
    c.create_registered_model(MODEL)
    for f1 in (0.90, 0.92):
        run = c.create_run(exp)
        c.log_metric(run.info.run_id, "f1_score", f1)
        c.set_terminated(run.info.run_id)
        c.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)


def manifest(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": MODEL, "version": version},
            "gate": {"threshold": 0.5},
            "serving": {"image": "mlrollout/serving:bench", "replicas": 2},
            "rollout": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
        },
    }


def start_operator(kubeconfig: Path, tracking_uri: str, work: Path) -> tuple[ManagedProcess, dict[str, str]]:
    """CRD, namespace and the operator process; returns once its liveness endpoint answers."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "MLROLLOUT_TRACKING_URI": tracking_uri,
        "MLROLLOUT_RESYNC_SECONDS": "120",
    }
    kubectl = ["kubectl"]
    subprocess.run(
        [*kubectl, "apply", "-f", str(ROOT / "crds" / "modeldeployment.yaml")],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd/modeldeployments.mlrollout.io"],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run([*kubectl, "create", "namespace", NS], env=env, check=False, capture_output=True)
    port = free_port()
    operator = ManagedProcess.start(
        "operator", launch.operator_argv(port), env=env, cwd=ROOT, logs=WorkLogs(work)
    )
    operator.wait_http(launch.liveness_url(port), timeout=60)
    return operator, env


def stop_operator(operator: ManagedProcess, env: dict[str, str]) -> None:
    operator.stop(timeout=20)
    subprocess.run(
        ["kubectl", "delete", "namespace", NS, "--wait=false"], env=env, check=False, capture_output=True
    )


async def run(
    count: int, rate: float, kubeconfig: Path, operator: ManagedProcess, work: Path, limit_s: float
) -> dict[str, Any]:
    await config.load_kube_config(str(kubeconfig))
    api = client.ApiClient()
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    seen: dict[str, float] = {}
    peak = [0.0]
    stop = asyncio.Event()

    async def watch_deployments() -> None:
        w = watch.Watch()
        while not stop.is_set():
            try:
                async for ev in w.stream(apps.list_namespaced_deployment, NS, timeout_seconds=30):
                    if ev["type"] == "ADDED":
                        seen.setdefault(ev["object"].metadata.name, time.monotonic())
                    if stop.is_set():
                        break
            except Exception:  # a dropped watch restarts; the benchmark ends on its own deadline
                await asyncio.sleep(0.2)

    async def sample_rss() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(operator.pid))
            await asyncio.sleep(0.5)

    async def phases(names: list[str], predicate: Any, limit_s: float) -> float:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            items = (await custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL))["items"]
            done = sum(
                1 for i in items if i["metadata"]["name"] in names and predicate(i.get("status") or {})
            )
            if done == len(names):
                return time.monotonic()
            await asyncio.sleep(0.5)
        raise SystemExit(f"not settled within {limit_s}s; see {work / 'operator.log'}")

    tasks = [asyncio.create_task(watch_deployments()), asyncio.create_task(sample_rss())]
    try:
        rss_idle = rss_mb(operator.pid)
        names = [f"md-{i:04d}" for i in range(count)]
        # Phase 1: create at version 1.
        created: dict[str, float] = {}
        t_first = time.monotonic()
        for name in names:
            created[name] = time.monotonic()
            await custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, manifest(name, "1"))
            await asyncio.sleep(1 / rate)
        t_settled = await phases(names, lambda s: s.get("phase") == "Promoted", limit_s=limit_s)
        stable_lat = [seen[f"{n}-v1-{_hash()}"] - created[n] for n in names if f"{n}-v1-{_hash()}" in seen]
        # Phase 2: patch to version 2 -> canary Deployment.
        patched: dict[str, float] = {}
        t_first2 = time.monotonic()
        for name in names:
            patched[name] = time.monotonic()
            await custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NS,
                PLURAL,
                name,
                {"spec": {"model": {"version": "2"}}},
                _content_type="application/merge-patch+json",
            )
            await asyncio.sleep(1 / rate)
        t_settled2 = await phases(
            names, lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1, limit_s=limit_s
        )
        canary_lat = [seen[f"{n}-v2-{_hash()}"] - patched[n] for n in names if f"{n}-v2-{_hash()}" in seen]
        return {
            "count": count,
            "rate_per_s": rate,
            "stable_created_p50_s": round(statistics.median(stable_lat), 3),
            "stable_created_p95_s": round(pct(stable_lat, 0.95), 3),
            "canary_created_p50_s": round(statistics.median(canary_lat), 3),
            "canary_created_p95_s": round(pct(canary_lat, 0.95), 3),
            "canary_created_max_s": round(max(canary_lat), 3),
            "samples": [len(stable_lat), len(canary_lat)],
            "settle_first_version_s": round(t_settled - t_first, 1),
            "settle_canary_50pct_s": round(t_settled2 - t_first2, 1),
            "rss_idle_mb": round(rss_idle, 1),
            "rss_peak_mb": round(peak[0], 1),
            "rss_final_mb": round(rss_mb(operator.pid), 1),
        }
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await api.close()


def _hash() -> str:
    from mlrollout.operator.spec import parse_spec

    return parse_spec(manifest("x", "1")["spec"]).serving.template_hash


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="creates/patches per second")
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of starting a local one")
    parser.add_argument(
        "--nodes", type=int, help="kwok nodes (110 pods each); default: enough for 2 pods per object"
    )
    parser.add_argument("--limit", type=float, default=600.0, help="seconds each phase may take to settle")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on `kill`/timeout
    work = Path(tempfile.mkdtemp(prefix="mlrollout-bench-"))
    (work / "artifacts").mkdir()
    cluster = None
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        nodes = args.nodes or max(3, -(-args.count * 2 * 12 // 1000))  # 2 pods per object, 20% headroom
        cluster = LocalCluster(state=work / "cluster", nodes=nodes)
        cluster.up()
        kubeconfig = cluster.kubeconfig
    mlflow, uri = start_mlflow(work)
    try:
        register_versions(uri)
        operator, env = start_operator(kubeconfig, uri, work)
        try:
            result = asyncio.run(run(args.count, args.rate, kubeconfig, operator, work, args.limit))
        finally:
            stop_operator(operator, env)
        print(json.dumps(result, indent=2))
    finally:
        mlflow.stop()
        if cluster is not None:
            cluster.down()
    print(f"logs: {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

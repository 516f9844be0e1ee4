"""One client write's round trip on an idle local cluster: a ModelDeployment against a Rollout.

bench_peers.py's harness writes its waves one object after another, so a slower write stretches a
wave. This tells the apiserver's own cost of each kind of write (CRD schema, CEL rules, object size)
from the load around it: the same patches, sequential, with nothing else running on the cluster.
The ModelDeployment CRD is also installed without its CEL rules (under another group) to price them.

    flock /tmp/mlrollout-heavy.lock .venv/bin/python -P benchmarks/operator/write_cost.py [--writes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client, config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "hack"), str(ROOT / "tests")]

from bench_peers import argo_build, controllers  # noqa: E402
from local_cluster import LocalCluster  # noqa: E402

NS = "writes"
NO_CEL = "nocel.mlrollout.io"


def without_cel(crd: dict[str, Any]) -> dict[str, Any]:
    """The same CRD with every x-kubernetes-validations removed, under the group NO_CEL."""

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("x-kubernetes-validations", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    out = copy.deepcopy(crd)
    strip(out)
    out["metadata"]["name"] = f"{out['spec']['names']['plural']}.{NO_CEL}"
    out["spec"]["group"] = NO_CEL
    return out


async def measure(kubeconfig: Path, writes: int, rounds: int) -> None:
    await config.load_kube_config(str(kubeconfig))
    api = client.ApiClient()
    custom = client.CustomObjectsApi(api)
    merge = {"_content_type": "application/merge-patch+json"}
    md = ("mlrollout.io", "v1alpha1", NS, "modeldeployments", "md-a")
    md_no_cel = (NO_CEL, "v1alpha1", NS, "modeldeployments", "md-a")
    rollout = ("argoproj.io", "v1alpha1", NS, "rollouts", "ro-a")

    def intent(i: int) -> dict[str, Any]:
        return {"spec": {"intent": {"id": f"w{i}", "abort": True}}}

    cases: list[tuple[str, Callable[[int], Awaitable[Any]]]] = [
        (
            "Rollout: status.abort (bench_peers' abort)",
            lambda i: custom.patch_namespaced_custom_object_status(
                *rollout, {"status": {"abort": bool(i % 2)}}, **merge
            ),
        ),
        (
            "Rollout: pod template annotation (a change)",
            lambda i: custom.patch_namespaced_custom_object(
                *rollout, {"spec": {"template": {"metadata": {"annotations": {"w": str(i)}}}}}, **merge
            ),
        ),
        (
            "ModelDeployment: spec.intent (bench_peers' abort)",
            lambda i: custom.patch_namespaced_custom_object(*md, intent(i), **merge),
        ),
        (
            "ModelDeployment without CEL rules: spec.intent",
            lambda i: custom.patch_namespaced_custom_object(*md_no_cel, intent(i), **merge),
        ),
        (
            "ModelDeployment: spec.model.version (a change)",
            lambda i: custom.patch_namespaced_custom_object(
                *md, {"spec": {"model": {"version": str(1 + i % 2)}}}, **merge
            ),
        ),
        (
            "ModelDeployment: status",
            lambda i: custom.patch_namespaced_custom_object_status(
                *md, {"status": {"message": f"w{i}"}}, **merge
            ),
        ),
    ]
    print("| write (merge patch, sequential) | p50 ms | p95 ms |\n|---|---:|---:|")
    taken: dict[str, list[float]] = {}
    for _ in range(rounds):  # interleaved, so a burst of background work hits every case alike
        for label, write in cases:
            for i in range(writes):
                t0 = time.perf_counter()
                await write(i)
                taken.setdefault(label, []).append(time.perf_counter() - t0)
    for label, _ in cases:
        ms = sorted(1000 * t for t in taken[label])
        print(f"| {label} | {statistics.median(ms):.1f} | {ms[int(0.95 * len(ms))]:.1f} |")
    await api.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=200, help="writes per case and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    argo = argo_build()  # its CRDs (built first if this machine has none)
    work = Path(tempfile.mkdtemp(prefix="mlrollout-writes-"))
    cluster = LocalCluster(state=work / "cluster", nodes=1)
    cluster.up()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}

    def kubectl(*argv: str, stdin: str | None = None) -> None:
        subprocess.run(["kubectl", *argv], env=env, check=True, capture_output=True, text=True, input=stdin)

    try:
        crd = yaml.safe_load((ROOT / "crds" / "modeldeployment.yaml").read_text())
        kubectl("apply", "--server-side", "-f", str(argo / "crds" / "rollout-crd.yaml"))
        kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(crd))
        kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(without_cel(crd)))
        kubectl("wait", "--for=condition=Established", "crd", "--all")
        kubectl("create", "namespace", NS)
        ctls = controllers(argo_pods_like_ours=True)
        md = ctls["mlrollout"].manifest("md-a", "1") | {"metadata": {"name": "md-a", "namespace": NS}}
        md_no_cel = md | {"apiVersion": f"{NO_CEL}/v1alpha1"}
        rollout = ctls["argo"].manifest("ro-a", "1")
        rollout["metadata"]["namespace"] = NS
        for obj in (md, md_no_cel, rollout):
            kubectl("create", "-f", "-", stdin=json.dumps(obj))
        asyncio.run(measure(cluster.kubeconfig, args.writes, args.rounds))
    finally:
        cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A canary rolled out by the installed operator (2 real pods) over real serving pods: at each
setWeight step the share of answers per model version, measured by the load generator through the
one Service, follows the replica ratio of Ready pods; `kubectl rollout status` works on real
readiness; killing the acting operator pod mid-rollout lets the standby finish it."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from local_cluster import LocalCluster
from realpods import LoadJob, kubectl_json, md_serving, share_tolerance, wait_until
from support.mlflow_models import train_and_register

pytestmark = pytest.mark.realnode
MODEL = "node-rollout"
REPLICAS = 4


@pytest.fixture(scope="module")
def versions(node_mlflow: Any) -> Any:
    return [train_and_register(node_mlflow.tracking_uri, MODEL, seed=s) for s in (0, 1)]


def model_deployment(name: str, version: str, image: str, tracking_uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": MODEL, "version": version},
            "gate": {"metric": "f1_score", "threshold": 0.5},
            "serving": md_serving(image, tracking_uri, REPLICAS),
            "rollout": {
                "steps": [
                    {"setWeight": 25},
                    {"pause": {}},
                    {"setWeight": 50},
                    {"pause": {}},
                    {"setWeight": 100},
                    {"pause": {}},
                ],
                "progressDeadlineSeconds": 300,
            },
        },
    }


class Md:
    def __init__(self, cluster: LocalCluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name

    def kubectl(self, *args: str, **kw: Any) -> str:
        return self.cluster.kubectl("-n", self.namespace, *args, **kw).stdout

    def status(self) -> dict[str, Any]:
        return dict(
            kubectl_json(self.cluster, "-n", self.namespace, "get", "md", self.name).get("status", {})
        )

    def ready_pods(self) -> dict[str, str]:
        """Serving pods that are Ready and not terminating, by name, with their version: what the
        Service sends traffic to (the Deployments' readyReplicas repeat this later)."""
        selector = f"mlrollout.io/model-deployment={self.name}"
        pods = kubectl_json(self.cluster, "-n", self.namespace, "get", "pods", "-l", selector)["items"]
        out: dict[str, str] = {}
        for p in pods:
            conditions = (p.get("status") or {}).get("conditions") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            if ready and not p["metadata"].get("deletionTimestamp"):
                out[p["metadata"]["name"]] = p["metadata"]["labels"]["mlrollout.io/version"]
        return out

    def ready_by_version(self) -> dict[str, int]:
        return dict(Counter(self.ready_pods().values()))

    def routed_by_version(self) -> dict[str, int] | None:
        """Ready pods by version once the Service's EndpointSlices list exactly them as ready (None
        before): the endpoint controller follows the pods a moment later."""
        pods = self.ready_pods()
        slices = kubectl_json(
            self.cluster,
            "-n",
            self.namespace,
            "get",
            "endpointslices",
            "-l",
            f"kubernetes.io/service-name={self.name}",
        )["items"]
        routed = {
            (e.get("targetRef") or {}).get("name")
            for sl in slices
            for e in sl.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")
        }
        return dict(Counter(pods.values())) if pods and routed == set(pods) else None

    def wait_step(
        self, index: int, weight: int, timeout: float = 300, canary: str | None = None
    ) -> dict[str, Any]:
        seen: list[dict[str, Any]] = [{}]

        def at_step() -> dict[str, Any] | None:
            s = seen[0] = self.status()
            paused = s.get("phase") == "Paused" and s.get("currentStepIndex") == index
            right_canary = canary is None or (s.get("canary") or {}).get("version") == canary
            return s if paused and right_canary and s.get("weight") == weight else None

        try:
            return dict(wait_until(f"{self.name} paused at step {index}", at_step, timeout))
        except pytest.fail.Exception:
            brief = {k: seen[0].get(k) for k in ("phase", "currentStepIndex", "weight", "pauseReason")}
            pytest.fail(f"{self.name} never paused at step {index} (weight {weight}); last status {brief}")

    def promote(self) -> None:
        intent = {"spec": {"intent": {"id": uuid.uuid4().hex[:12], "promote": "step"}}}
        self.kubectl("patch", "md", self.name, "--type=merge", "-p", json.dumps(intent))


def measure(node: LocalCluster, ns: str, image: str, rows: list[dict[str, Any]], requests: int) -> Any:
    load = LoadJob(
        node, ns, image, f"http://split-md.{ns}:8080", rows, users=4, max_requests=requests, seconds=120
    )
    return load.result(timeout=300)


def test_canary_weights_are_measured_in_real_traffic_and_the_standby_operator_finishes(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any,
    versions: Any,
) -> None:  # fmt: skip
    v1, v2 = versions
    image = node_image("mlrollout-serving")
    loadgen = node_image("mlrollout-loadgen")
    md = Md(node, real_namespace, "split-md")
    manifest = model_deployment(md.name, v1.version, image, node_mlflow.in_cluster_uri)
    node.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(manifest))
    wait_until("v1 stable on all replicas", lambda: md.ready_by_version() == {v1.version: REPLICAS}, 300)

    manifest["spec"]["model"]["version"] = v2.version
    node.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(manifest))
    rows = [{"features": r, "label": None} for r in v1.sample_rows]
    measured = []
    for index, weight in ((1, 25), (3, 50)):
        status = md.wait_step(index, weight)
        ready = wait_until("the Service routes to the Ready pods", md.routed_by_version, 60)
        expected = ready.get(v2.version, 0) / sum(ready.values())
        result = measure(node, real_namespace, loadgen, rows, 400)
        measured.append((weight, ready, result.by_version))
        print(f"\n[rollout] weight {weight}: ready pods {ready}, answers {result.by_version}")
        assert result.failed == 0, result.summary["failures"]
        assert abs(result.share(v2.version) - expected) <= share_tolerance(expected, result.ok), measured
        # The canary's Deployment is named in status: `kubectl rollout status` judges real readiness.
        md.kubectl("rollout", "status", f"deployment/{status['canary']['deployment']}", "--timeout=60s")
        if index == 1:
            # The acting replica goes away for real: the standby takes over the rest of the rollout.
            killed = kill_active_operator(node, installed_operator)
            print(f"[rollout] killed the active operator pod {killed}")
        md.promote()

    final = md.wait_step(5, 100)
    assert final["weight"] == 100
    wait_until("v2 on every replica", lambda: md.ready_by_version().get(v2.version) == REPLICAS, 300)
    result = measure(node, real_namespace, loadgen, rows, 200)
    assert result.failed == 0, result.summary["failures"]
    assert result.by_version == {v2.version: result.ok}
    md.promote()
    done = wait_until("Promoted", lambda: md.status().get("phase") == "Promoted" and md.status(), 300)
    assert done["stable"]["version"] == v2.version


def kill_active_operator(node: LocalCluster, op: Any) -> str:
    """Delete (grace 0) the replica kopf lets act: the peer with the highest priority in the
    ClusterKopfPeering (peers are named by POD_ID, the pod's name)."""
    peers = kubectl_json(node, "get", "clusterkopfpeering", "mlrollout").get("status", {})
    pods = {p["metadata"]["name"] for p in op.pods(node)}
    ranked = sorted(
        ((v.get("priority", 0), k) for k, v in peers.items() if isinstance(v, dict)), reverse=True
    )
    assert ranked, peers
    assert ranked[0][1] in pods, (peers, pods)
    pod = ranked[0][1]
    node.kubectl("-n", op.namespace, "delete", "pod", pod, "--grace-period=0", "--force", check=False)
    return pod


def test_a_canary_whose_model_cannot_load_crash_loops_for_real_and_is_rolled_back(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any
) -> None:
    good = train_and_register(node_mlflow.tracking_uri, "node-crash", seed=0)
    broken = train_and_register(node_mlflow.tracking_uri, "node-crash", seed=1)
    # The version's estimator goes missing from the artifact store: its pods download an MLmodel
    # that cannot be loaded, exit, and the kubelet restarts them (CrashLoopBackOff).
    stored = node_mlflow.artifact_root / broken.source.removeprefix("mlflow-artifacts:/")
    (stored / "model.skops").unlink()
    md = Md(node, real_namespace, "crashing")
    manifest = model_deployment(
        md.name, good.version, node_image("mlrollout-serving"), node_mlflow.in_cluster_uri
    )
    manifest["spec"]["model"]["name"] = good.name
    node.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(manifest))
    wait_until(
        "the good version on every replica", lambda: md.ready_by_version() == {good.version: REPLICAS}, 300
    )

    manifest["spec"]["model"]["version"] = broken.version
    node.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(manifest))

    def restarted() -> bool:
        selector = f"mlrollout.io/model-deployment={md.name},mlrollout.io/version={broken.version}"
        pods = kubectl_json(node, "-n", real_namespace, "get", "pods", "-l", selector)["items"]
        return any(
            c.get("restartCount", 0) >= 1 for p in pods for c in p["status"].get("containerStatuses", [])
        )

    wait_until("the broken canary's pod restarted by the kubelet", restarted, 180)
    status = wait_until("RolledBack", lambda: (s := md.status()).get("phase") == "RolledBack" and s, 300)
    assert status["stable"]["version"] == good.version
    reasons = node.kubectl(
        "-n", real_namespace, "get", "events", "--field-selector", f"involvedObject.name={md.name}",
        "-o", "jsonpath={.items[*].reason}",
    ).stdout.split()  # fmt: skip
    assert any("Rollback" in r or "RolledBack" in r for r in reasons), reasons
    wait_until(
        "the stable side back on every replica",
        lambda: md.ready_by_version() == {good.version: REPLICAS},
        300,
    )
    rows = [{"features": r, "label": None} for r in good.sample_rows]
    target = f"http://{md.name}.{real_namespace}:8080"
    load = LoadJob(
        node, real_namespace, node_image("mlrollout-loadgen"), target, rows, users=2, max_requests=100
    )
    result = load.result(timeout=180)
    assert result.failed == 0, result.summary["failures"]
    assert result.by_version == {good.version: result.ok}

"""The real node itself: registered with the pinned version and proper credentials, cluster DNS,
`kubectl logs` and `kubectl exec` through the kubelet's authenticated API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import real_node
from local_cluster import LocalCluster
from realpods import kubectl_json, wait_until

pytestmark = pytest.mark.realnode
VERSIONS = Path(__file__).resolve().parents[2] / "hack" / "versions.env"


def pinned_kubernetes_version() -> str:
    for line in VERSIONS.read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("K8S_VERSION missing from hack/versions.env")


def test_real_node_is_ready_with_the_pinned_version_beside_kwok_nodes(node: LocalCluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(node, "get", "nodes")["items"]}
    real = nodes[real_node.NODE_NAME]
    ready = {c["type"]: c["status"] for c in real["status"]["conditions"]}
    assert ready["Ready"] == "True", real["status"]["conditions"]
    info = real["status"]["nodeInfo"]
    assert info["kubeletVersion"] == pinned_kubernetes_version()
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert [a["address"] for a in real["status"]["addresses"] if a["type"] == "InternalIP"] == [
        real_node.NODE_IP
    ]
    # Only pods that ask for the real node land on it; the kwok nodes are still there for the rest.
    assert {"key": real_node.TAINT_KEY, "value": "true", "effect": "NoSchedule"} in real["spec"]["taints"]
    assert real["metadata"]["labels"][real_node.NODE_LABEL] == "real"
    assert sum(1 for n in nodes.values() if n["metadata"]["labels"].get("type") == "kwok") >= 1

    # The kubelet authenticated with its node certificate: the Node authorizer let it write its Lease.
    def lease_holder() -> str:
        lease = ("-n", "kube-node-lease", "get", "lease", real_node.NODE_NAME)
        out = node.kubectl(*lease, "-o", "jsonpath={.spec.holderIdentity}", check=False)
        return out.stdout.strip()

    assert wait_until("the node's Lease", lease_holder, 30, 0.5) == real_node.NODE_NAME


def test_pods_resolve_cluster_names_and_answer_kubectl_logs_and_exec(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any
) -> None:
    image = node_image("mlrollout-serving")
    script = (
        "import socket, time\n"
        "for name in ('kubernetes.default.svc.cluster.local', 'mlflow.mlflow'):\n"
        "    print(name, socket.gethostbyname(name), flush=True)\n"
        "time.sleep(600)\n"
    )
    node.kubectl(
        "-n", real_namespace, "run", "dns-probe", f"--image={image}", "--image-pull-policy=Never",
        "--restart=Never", "--command", "--", "python3", "-c", script,
    )  # fmt: skip

    def running() -> bool:
        pod = kubectl_json(node, "-n", real_namespace, "get", "pod", "dns-probe")
        return pod["status"].get("phase") == "Running"

    wait_until("the probe pod to run on the real node", running, 120)
    pod = kubectl_json(node, "-n", real_namespace, "get", "pod", "dns-probe")
    assert pod["spec"]["nodeName"] == real_node.NODE_NAME  # placed by the namespace's admission defaults
    assert pod["status"]["podIP"].startswith("10.88.")

    def resolved() -> list[str]:
        out = node.kubectl("-n", real_namespace, "logs", "dns-probe", check=False).stdout
        return out.splitlines() if "mlflow.mlflow" in out else []

    lines = wait_until("both names resolved in the pod's log", resolved, 60)
    addresses = dict(line.split()[:2] for line in lines)
    mlflow_ip = kubectl_json(node, "-n", "mlflow", "get", "service", "mlflow")["spec"]["clusterIP"]
    assert addresses == {"kubernetes.default.svc.cluster.local": "10.96.0.1", "mlflow.mlflow": mlflow_ip}
    out = node.kubectl("-n", real_namespace, "exec", "dns-probe", "--", "python3", "-c", "print(6 * 7)")
    assert out.stdout.strip() == "42"

"""Fixtures for the real-pod tier: the local stack's real kubelet node, the project's images in its
containerd, an MLflow server the pods reach by DNS, and namespaces whose pods land on the real node.

Nothing here stands in for the kubelet, kube-proxy or a router: pods run in containerd, Services are
kube-proxy's iptables rules, and the load comes from a pod (see realpods.py)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launch
import node_images
import real_node
from local_cluster import ClusterError, LocalCluster
from support.ci import unavailable
from support.procs import ManagedProcess, ProcessFailed

MLFLOW_NAMESPACE = "mlflow"
MLFLOW_SERVICE_PORT = 5000
IN_CLUSTER_MLFLOW = f"http://mlflow.{MLFLOW_NAMESPACE}:{MLFLOW_SERVICE_PORT}"


@pytest.fixture(scope="session")
def node(cluster: LocalCluster, component_logs: Any) -> LocalCluster:
    """The session's control plane with the real node joined (started on first use)."""
    if not cluster.real_node:
        missing = real_node.missing_prerequisites()
        unavailable(
            "the local cluster has no real node: "
            + (
                "; ".join(missing)
                if missing
                else "it was started for kwok-only tests (MLROLLOUT_TEST_KUBECONFIG?)"
            )
        )
    for component in real_node.COMPONENTS:
        component_logs.register(component, cluster.log_path(component))
    try:
        cluster.join_real_node()
    except (ClusterError, real_node.NodeError) as exc:
        unavailable(f"real node: {exc}")
    return cluster


@pytest.fixture(scope="session")
def node_image(node: LocalCluster, component_logs: Any) -> Callable[[str], str]:
    """`node_image("mlrollout-serving")` -> the ref of that image in the node's containerd (built from
    its Dockerfile when its sources changed, imported when the node lacks it)."""
    refs: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in refs:
            try:
                image = node_images.ensure_project_image(name, component_logs.root)
            except real_node.NodeError as exc:
                unavailable(f"image {name} for the real node: {exc}")
            if image.seconds:
                print(f"\n[node-images] {image.ref} ready in {image.seconds:.0f}s", file=sys.stderr)
            refs[name] = image.ref
        return refs[name]

    return get


@dataclass
class NodeMlflow:
    tracking_uri: str  # from the host (tests register models through it)
    in_cluster_uri: str  # from pods, by the Service's DNS name
    process: ManagedProcess
    artifact_root: Path  # where the server keeps what mlflow-artifacts:/ URIs name


@pytest.fixture(scope="session")
def node_mlflow(
    node: LocalCluster, component_logs: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeMlflow]:
    """An MLflow server serving its artifacts, on the node's bridge address, behind the Service
    mlflow.mlflow:5000 (a selectorless Service whose endpoint is this host process)."""
    root = tmp_path_factory.mktemp("node-mlflow")
    port = real_node.free_port_on(real_node.NODE_IP)
    proc = ManagedProcess.start(
        "mlflow-node",
        launch.mlflow_artifact_server_argv(root, real_node.NODE_IP, port),
        logs=component_logs,
        env={**os.environ, "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"},
    )
    uri = f"http://{real_node.NODE_IP}:{port}"
    try:
        proc.wait_http(f"{uri}/health", timeout=120)
    except ProcessFailed as exc:
        proc.stop()
        unavailable(f"MLflow server for the real node: {exc}")
    node.kubectl(
        "apply", "-f", "-",
        input=real_node.host_service("mlflow", MLFLOW_NAMESPACE, MLFLOW_SERVICE_PORT, port),
    )  # fmt: skip
    try:
        yield NodeMlflow(
            tracking_uri=uri, in_cluster_uri=IN_CLUSTER_MLFLOW, process=proc, artifact_root=root / "artifacts"
        )
    finally:
        proc.stop()


def real_namespace_manifest(name: str) -> str:
    """A namespace whose pods are placed on the real node by admission (PodNodeSelector and
    PodTolerationRestriction), the way clusters dedicate nodes to a team."""
    toleration = [{"key": real_node.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"mlrollout.io/test-tier": "realnode"},
                "annotations": {
                    "scheduler.alpha.kubernetes.io/node-selector": f"{real_node.NODE_LABEL}=real",
                    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(toleration),
                },
            },
        }
    )


@pytest.fixture
def real_namespace(node: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:36].strip("-")
    name = f"r-{base}-{uuid.uuid4().hex[:5]}"
    node.kubectl("apply", "-f", "-", input=real_namespace_manifest(name))
    try:
        yield name
    finally:
        # Always: leftover serving pods would load the node for every later test.
        node.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


ROOT = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "mlrollout-system"


@dataclass
class InstalledOperator:
    image: str
    namespace: str = OPERATOR_NAMESPACE

    def pods(self, cluster: LocalCluster) -> list[dict[str, Any]]:
        selector = "app.kubernetes.io/name=mlrollout-operator"
        out = cluster.kubectl("-n", self.namespace, "get", "pods", "-l", selector, "-o", "json").stdout
        return list(json.loads(out)["items"])


def install_kustomization(image_ref: str, dest: Path) -> Path:
    """A kustomization over manifests/overlays/local that pins the imported operator image and
    scopes the operator to this tier's r-* namespaces (other tiers run operators of their own)."""
    name, tag = image_ref.rsplit(":", 1)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "kustomization.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes only relative paths to other kustomizations.
                "resources": [os.path.relpath(ROOT / "manifests" / "overlays" / "local", dest)],
                "images": [{"name": "mlrollout-operator", "newName": name, "newTag": tag}],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "mlrollout-operator"},
                        "patch": json.dumps(
                            [
                                {
                                    "op": "replace",
                                    "path": "/spec/template/spec/containers/0/args/0",
                                    "value": installed_args(),
                                },
                                # A standby takes over this soon after the active replica is killed.
                                {
                                    "op": "add",
                                    "path": "/spec/template/spec/containers/0/env/-",
                                    "value": {"name": "MLROLLOUT_PEERING_LIFETIME", "value": "10"},
                                },
                            ]
                        ),
                    }
                ],
            },
            indent=2,
        )
    )
    return dest


def installed_args() -> str:
    """The base install's `kopf run` line with --all-namespaces narrowed to r-* namespaces."""
    import yaml

    docs = list(yaml.safe_load_all((ROOT / "manifests" / "base" / "operator.yaml").read_text()))
    args = docs[0]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--all-namespaces" in args, args
    return str(args).replace("--all-namespaces", "--namespace 'r-*'")


@pytest.fixture(scope="session")
def installed_operator(
    node: LocalCluster, node_image: Callable[[str], str], node_mlflow: NodeMlflow,
    tmp_path_factory: pytest.TempPathFactory, component_logs: Any,
) -> Iterator[InstalledOperator]:  # fmt: skip
    """`kubectl apply -k` of the local overlay: the operator as 2 real pods (peering) on the node."""
    image = node_image("mlrollout-operator")
    kustomization = install_kustomization(image, tmp_path_factory.mktemp("install"))
    node.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(kustomization), timeout=180)
    op = InstalledOperator(image=image)
    try:
        node.kubectl(
            "-n", OPERATOR_NAMESPACE, "rollout", "status", "deployment/mlrollout-operator", "--timeout=240s",
            timeout=260,
        )  # fmt: skip
        yield op
    finally:
        for pod in op.pods(node):
            name = pod["metadata"]["name"]
            logs = node.kubectl("-n", OPERATOR_NAMESPACE, "logs", name, "--all-containers", check=False)
            component_logs.path(f"installed-{name}").write_text(logs.stdout + logs.stderr)
        node.kubectl("delete", "-k", str(kustomization), "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="session")
def kube_prometheus(node: LocalCluster, component_logs: Any) -> Iterator[Any]:
    """Prometheus with the shipped scrape job, discovering pods through the Kubernetes API."""
    from kube_prometheus import KubePrometheus
    from support.prometheus import PrometheusUnavailable

    try:
        prom = KubePrometheus(node.kubeconfig, component_logs)
    except (PrometheusUnavailable, ProcessFailed) as exc:
        unavailable(f"Prometheus with Kubernetes discovery: {exc}")
    node.kubectl("apply", "-f", "-", input=prom.service_manifest())
    try:
        yield prom
    finally:
        prom.stop()

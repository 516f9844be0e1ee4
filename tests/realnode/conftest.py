"""Fixtures for the real-pod tier: the local stack's real kubelet node, the project's images in its
containerd, an MLflow server the pods reach by DNS, and namespaces whose pods land on the real node.

Nothing here stands in for the kubelet, kube-proxy or a router: pods run in containerd, Services are
kube-proxy's iptables rules, and the load comes from a pod (see realpods.py)."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import node_images
import real_node
import real_stack
from kube_prometheus import KubePrometheus
from local_cluster import ClusterError, LocalCluster
from real_stack import (  # noqa: F401 - names this conftest has always offered
    IN_CLUSTER_MLFLOW,
    MLFLOW_NAMESPACE,
    MLFLOW_SERVICE_PORT,
    OPERATOR_NAMESPACE,
    ROOT,
    InstalledOperator,
    NodeMlflow,
    StackError,
    install_kustomization,
    install_operator,
    installed_args,
)
from support.ci import unavailable
from traefik_proxy import Traefik


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


@pytest.fixture(scope="session")
def node_mlflow(
    node: LocalCluster, component_logs: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeMlflow]:
    """An MLflow server serving its artifacts, on the node's bridge address, behind the Service
    mlflow.mlflow:5000 (a selectorless Service whose endpoint is this host process)."""
    try:
        server = real_stack.node_mlflow(
            node, tmp_path_factory.mktemp("node-mlflow"), component_logs.path("mlflow-node")
        )
    except StackError as exc:
        unavailable(f"MLflow server for the real node: {exc}")
    try:
        yield server
    finally:
        server.process.stop()


def real_namespace_manifest(name: str) -> str:
    return real_stack.real_namespace_manifest(name, {"mlrollout.io/test-tier": "realnode"})


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


@pytest.fixture(scope="session")
def installed_operator(
    node: LocalCluster, node_image: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory,
    component_logs: Any, node_mlflow: NodeMlflow,
) -> Iterator[InstalledOperator]:  # fmt: skip
    """`kubectl apply -k` of the local overlay: the operator as 2 real pods (peering) on the node,
    serving this tier's r-* namespaces only (other tiers run operators of their own); a standby
    takes over 10 s after the active replica is killed."""
    image = node_image("mlrollout-operator")
    dest = tmp_path_factory.mktemp("install")
    op = InstalledOperator(image=image, kustomization=dest)
    try:
        op = install_operator(node, image, dest, watch="r-*", peering_lifetime=10)
        yield op
    finally:
        for pod in op.pods(node):
            name = pod["metadata"]["name"]
            logs = node.kubectl("-n", op.namespace, "logs", name, "--all-containers", check=False)
            component_logs.path(f"installed-{name}").write_text(logs.stdout + logs.stderr)
        node.kubectl("delete", "-k", str(dest), "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="session")
def kube_prometheus(node: LocalCluster, component_logs: Any) -> Iterator[KubePrometheus]:
    """Prometheus with the shipped scrape job, discovering pods through the Kubernetes API."""
    try:
        prom = KubePrometheus(node.kubeconfig, component_logs.path("prometheus-kube-sd"))
    except StackError as exc:
        unavailable(f"Prometheus with Kubernetes discovery: {exc}")
    prom.publish(node)
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="session")
def traefik(node: LocalCluster, component_logs: Any) -> Iterator[Traefik]:
    """One Traefik for the proxy routers: its Gateway API provider and its NGINX-annotation one."""
    rundir = Path(tempfile.mkdtemp(prefix="mlrollout-traefik-"))
    try:
        proxy = Traefik.start(node, rundir, component_logs.path("traefik"))
    except StackError as exc:
        unavailable(f"Traefik for the gatewayAPI and nginx routers: {exc}")
    try:
        yield proxy
    finally:
        proxy.stop()

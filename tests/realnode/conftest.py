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
        yield NodeMlflow(tracking_uri=uri, in_cluster_uri=IN_CLUSTER_MLFLOW, process=proc)
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

"""The local control plane is real: Deployments roll out onto kwok nodes, failures carry logs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from local_cluster import COMPONENTS, ClusterError, LocalCluster
from support.ci import unavailable

pytestmark = pytest.mark.cluster

DEPLOYMENT = textwrap.dedent(
    """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - name: web
            image: registry.invalid/web:1  # kwok runs no containers: the image is never pulled
            readinessProbe: {httpGet: {path: /readyz, port: 8080}}
    """
)


def test_deployment_rolls_out_on_kwok_nodes(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT)
    status = cluster.kubectl(
        "rollout", "status", "-n", namespace, "deployment/web", "--timeout=60s", timeout=90
    )
    assert "successfully rolled out" in status.stdout

    wide = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    rows = [line.split() for line in wide.splitlines()[1:]]
    assert len(rows) == 3, wide
    assert all(r[2] == "Running" for r in rows), wide
    assert all(r[6].startswith("kwok-node-") for r in rows), wide

    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    kwok_nodes = {
        n["metadata"]["name"] for n in nodes if n["metadata"]["annotations"].get("kwok.x-k8s.io/node")
    }
    assert {p["spec"]["nodeName"] for p in pods} <= kwok_nodes
    for pod in pods:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", pod["status"]


def test_apiserver_enforces_rbac_for_service_accounts(cluster: LocalCluster, namespace: str) -> None:
    sa = f"system:serviceaccount:{namespace}:default"
    answer = cluster.kubectl("auth", "can-i", "list", "secrets", "--as", sa, "-n", namespace, check=False)
    assert answer.stdout.strip() == "no"
    assert cluster.kubectl("auth", "can-i", "list", "secrets", "-n", namespace).stdout.strip() == "yes"


def test_component_that_fails_to_start_reports_its_log(tmp_path: Path) -> None:
    """A component dying at start surfaces as ClusterError naming it, with its own log lines."""
    bins = tmp_path / "bin"
    bins.mkdir()
    for name in COMPONENTS:
        script = bins / name
        script.write_text(
            f"#!/bin/sh\necho '{name}: listen tcp 127.0.0.1: bind: address already in use'\nexit 3\n"
        )
        script.chmod(0o755)
    broken = LocalCluster(state=tmp_path / "state", bin_dir=bins)
    try:
        with pytest.raises(ClusterError) as err:
            broken.up(timeout=20)
    finally:
        broken.down()
    message = str(err.value)
    assert "etcd exited with code 3" in message
    assert "address already in use" in message
    assert not broken.running()


def test_unavailable_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="MLflow is down"):
        unavailable("MLflow is down")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        unavailable("MLflow is down")

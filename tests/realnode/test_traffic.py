"""Traffic through a real Service: kube-proxy spreads new connections over the Ready pods, measured
from the responses (X-Model-Version) by the load generator running as a pod."""

from __future__ import annotations

from typing import Any

import pytest
from local_cluster import LocalCluster
from realpods import LoadJob, apply, service, serving_deployment, share_tolerance, wait_until
from support.mlflow_models import train_and_register

pytestmark = pytest.mark.realnode


@pytest.fixture(scope="module")
def two_versions(node_mlflow: Any) -> Any:
    a = train_and_register(node_mlflow.tracking_uri, "node-churn", seed=0)
    b = train_and_register(node_mlflow.tracking_uri, "node-churn", seed=1)
    return a, b


def test_service_splits_new_connections_by_ready_pods_measured_from_responses(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, two_versions: Any
) -> None:
    a, b = two_versions
    image = node_image("mlrollout-serving")
    labels = {"app.kubernetes.io/name": "mlrollout-serving", "mlrollout.io/model-deployment": "split"}
    common = {"model_name": a.name, "tracking_uri": node_mlflow.in_cluster_uri, "labels": labels}
    apply(
        node,
        serving_deployment("split-a", real_namespace, image, model_uri=a.model_uri, version=a.version,
                           replicas=3, **common),
        serving_deployment("split-b", real_namespace, image, model_uri=b.model_uri, version=b.version,
                           replicas=1, **common),
        service("split", real_namespace, labels),
    )  # fmt: skip
    for name, want in (("split-a", 3), ("split-b", 1)):
        node.kubectl(
            "-n", real_namespace, "rollout", "status", f"deployment/{name}", "--timeout=240s", timeout=260
        )  # fmt: skip
        ready = node.kubectl(
            "-n", real_namespace, "get", "deployment", name, "-o", "jsonpath={.status.readyReplicas}"
        ).stdout
        assert int(ready) == want

    rows = [{"features": r, "label": None} for r in a.sample_rows]
    load = LoadJob(
        node, real_namespace, node_image("mlrollout-loadgen"), f"http://split.{real_namespace}:8080", rows,
        users=4, max_requests=400, seconds=90,
    )  # fmt: skip
    result = load.result(timeout=240)
    print(f"\n[traffic] {result.summary}")
    assert result.failed == 0, result.summary["failures"]
    assert result.ok == result.summary["requests"] >= 300  # every finished request answered
    assert set(result.by_version) == {a.version, b.version}
    tolerance = share_tolerance(0.25, result.ok)
    assert abs(result.share(b.version) - 0.25) <= tolerance, (result.by_version, tolerance)


def test_a_pod_that_is_not_ready_gets_no_traffic(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, two_versions: Any
) -> None:
    """readiness is real: a pod whose model cannot load never joins the Service's endpoints."""
    a, _ = two_versions
    image = node_image("mlrollout-serving")
    labels = {"app.kubernetes.io/name": "mlrollout-serving", "mlrollout.io/model-deployment": "ready"}
    common = {"model_name": a.name, "tracking_uri": node_mlflow.in_cluster_uri, "labels": labels}
    apply(
        node,
        serving_deployment("ready-good", real_namespace, image, model_uri=a.model_uri, version=a.version,
                           replicas=1, **common),
        serving_deployment("ready-missing", real_namespace, image, model_uri=f"models:/{a.name}/999",
                           version="999", replicas=1, **common),
        service("ready", real_namespace, labels),
    )  # fmt: skip
    node.kubectl(
        "-n", real_namespace, "rollout", "status", "deployment/ready-good", "--timeout=240s", timeout=260
    )  # fmt: skip

    def restarted() -> bool:
        out = node.kubectl(
            "-n", real_namespace, "get", "pods", "-l", "mlrollout.io/version=999",
            "-o", "jsonpath={.items[*].status.containerStatuses[*].restartCount}",
        ).stdout  # fmt: skip
        return bool(out.strip()) and int(out.split()[0]) >= 1

    wait_until("the pod of a missing model version to crash and restart", restarted, 180)
    rows = [{"features": r, "label": None} for r in a.sample_rows]
    load = LoadJob(
        node, real_namespace, node_image("mlrollout-loadgen"), f"http://ready.{real_namespace}:8080", rows,
        users=2, max_requests=100, seconds=60,
    )  # fmt: skip
    result = load.result(timeout=180)
    assert result.failed == 0, result.summary["failures"]
    assert result.by_version == {a.version: result.ok}

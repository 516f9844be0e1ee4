"""Prometheus finds the serving pods through the Kubernetes API with the scrape job manifests/ ships,
and labels each target the way canary analysis queries it (namespace, model_deployment, track)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from local_cluster import LocalCluster
from realpods import wait_until
from support.mlflow_models import train_and_register
from test_rollout import REPLICAS, model_deployment

pytestmark = pytest.mark.realnode


def test_prometheus_discovers_serving_pods_with_the_shipped_scrape_config(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any,
    kube_prometheus: Any,
) -> None:  # fmt: skip
    v1 = train_and_register(node_mlflow.tracking_uri, "node-monitored", seed=0)
    manifest = model_deployment(
        "watched", v1.version, node_image("mlrollout-serving"), node_mlflow.in_cluster_uri
    )
    manifest["spec"]["model"]["name"] = v1.name
    node.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(manifest))

    def scraped() -> list[dict[str, Any]]:
        targets = [
            t for t in kube_prometheus.active_targets()
            if t["labels"].get("namespace") == real_namespace and t.get("health") == "up"
        ]  # fmt: skip
        return targets if len(targets) == REPLICAS else []

    targets = wait_until(f"{REPLICAS} serving pods scraped", scraped, 300, 2)
    for target in targets:
        labels = target["labels"]
        assert labels["model_deployment"] == "watched"
        assert labels["track"] == "stable"
        assert labels["pod"].startswith("watched-")
        assert target["scrapeUrl"].startswith("http://10.88.")
    selector = "mlrollout.io/model-deployment=watched"
    pods = json.loads(node.kubectl("-n", real_namespace, "get", "pods", "-l", selector, "-o", "json").stdout)[
        "items"
    ]
    assert {t["labels"]["pod"] for t in targets} == {p["metadata"]["name"] for p in pods}

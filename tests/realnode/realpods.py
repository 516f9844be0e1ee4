"""Helpers for the real-pod tier: serving Deployments of the built image, the in-cluster load
generator (locust in a Job, benchmarks/load/locustfile.py; hack/real_stack.py, shared with
`make demo`), and reading what pods reported."""

from __future__ import annotations

import math
from typing import Any

from cluster.helpers import wait_for as wait_until
from real_stack import STOP_FILE, SUMMARY_PREFIX, LoadJob, LoadResult, apply, kubectl_json

# The load generator and the kubectl helpers live in hack/real_stack.py (the demo uses them too).
__all__ = [
    "STOP_FILE",
    "SUMMARY_PREFIX",
    "LoadJob",
    "LoadResult",
    "apply",
    "kubectl_json",
    "service",
    "serving_deployment",
    "share_tolerance",
    "wait_until",
]


def serving_deployment(
    name: str,
    namespace: str,
    image: str,
    *,
    model_uri: str,
    model_name: str,
    version: str,
    tracking_uri: str,
    replicas: int,
    labels: dict[str, str],
) -> dict[str, Any]:
    """A plain serving Deployment (what the operator makes, minus the operator), for node tests."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**labels, "mlrollout.io/version": version}},
            "template": {
                "metadata": {"labels": {**labels, "mlrollout.io/version": version}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "serving",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [
                                {"name": "MLROLLOUT_MODEL_URI", "value": model_uri},
                                {"name": "MLROLLOUT_MODEL_NAME", "value": model_name},
                                {"name": "MLROLLOUT_MODEL_VERSION", "value": version},
                                {"name": "MLROLLOUT_WORKERS", "value": "1"},
                                {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
                            ],
                            "startupProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 1,
                                "failureThreshold": 120,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "200Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}],
                },
            },
        },
    }


def md_serving(
    image: str, tracking_uri: str, replicas: int, extra_env: tuple[dict[str, str], ...] = ()
) -> dict[str, Any]:
    """spec.serving of the tier's ModelDeployments: the built image, one worker per pod (2 cores),
    MLflow reached by DNS, requests small enough for several pods on the one node."""
    return {
        "image": image,
        "replicas": replicas,
        "env": [
            {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
            {"name": "MLROLLOUT_WORKERS", "value": "1"},
            *extra_env,
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "200Mi"}, "limits": {"memory": "1Gi"}},
    }


def service(name: str, namespace: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
    }


def share_tolerance(expected: float, n: int, sigmas: float = 4.0) -> float:
    """How far a measured share may sit from `expected` over `n` independent picks: `sigmas`
    standard deviations of a binomial proportion (plus a floor for tiny expectations)."""
    return sigmas * math.sqrt(max(expected * (1 - expected), 0.01) / max(n, 1))

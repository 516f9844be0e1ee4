"""Helpers for the real-pod tier: serving Deployments of the built image, the in-cluster load
generator (locust in a Job, benchmarks/load/locustfile.py), and reading what pods reported."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from cluster.helpers import wait_for as wait_until
from local_cluster import LocalCluster

SUMMARY_PREFIX = "MLROLLOUT-LOAD-SUMMARY"
STOP_FILE = "/tmp/stop-load"


def kubectl_json(cluster: LocalCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


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


def service(name: str, namespace: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
    }


def apply(cluster: LocalCluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))


@dataclass(frozen=True)
class LoadResult:
    summary: dict[str, Any]
    pod: str

    @property
    def by_version(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.summary["by_version"].items()}

    @property
    def ok(self) -> int:
        return int(self.summary["ok"])

    @property
    def failed(self) -> int:
        return int(self.summary["failed"])

    def share(self, version: str) -> float:
        return self.by_version.get(version, 0) / max(self.ok, 1)


class LoadJob:
    """locust in a Job pod calling a Service; started, then stopped (stop file) or run to its bound."""

    def __init__(
        self,
        cluster: LocalCluster,
        namespace: str,
        image: str,
        target: str,
        rows: list[dict[str, Any]],
        *,
        users: int = 4,
        max_requests: int = 0,
        seconds: int = 60,
        feedback: float = 0.0,
        new_connections: bool = True,
    ) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.name = f"load-{uuid.uuid4().hex[:6]}"
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": namespace},
            "data": {"rows.json": json.dumps(rows)},
        }
        args = ["--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", target]
        args += ["--only-summary", "--loglevel", "WARNING"]
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.name, "namespace": namespace},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": seconds + 120,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "mlrollout-load", "job": self.name}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "locust",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": args,
                                "env": [
                                    {"name": "MLROLLOUT_LOAD_ROWS", "value": "/load-data/rows.json"},
                                    {"name": "MLROLLOUT_LOAD_FEEDBACK", "value": str(feedback)},
                                    {"name": "MLROLLOUT_LOAD_MAX_REQUESTS", "value": str(max_requests)},
                                    {"name": "MLROLLOUT_LOAD_STOP_FILE", "value": STOP_FILE},
                                    {
                                        "name": "MLROLLOUT_LOAD_NEW_CONNECTIONS",
                                        "value": "1" if new_connections else "0",
                                    },
                                ],
                                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                                "volumeMounts": [{"name": "rows", "mountPath": "/load-data"}],
                            }
                        ],
                        "volumes": [{"name": "rows", "configMap": {"name": self.name}}],
                    },
                },
            },
        }
        apply(cluster, config, job)

    def pod(self) -> str:
        def find() -> str | None:
            pods = kubectl_json(self.cluster, "-n", self.namespace, "get", "pods", "-l", f"job={self.name}")
            return pods["items"][0]["metadata"]["name"] if pods["items"] else None

        return str(wait_until(f"the load pod of job {self.name}", find, 60, 0.5))

    def wait_running(self, timeout: float = 120) -> None:
        def running() -> bool:
            pod = kubectl_json(self.cluster, "-n", self.namespace, "get", "pod", self.pod())
            return pod["status"].get("phase") == "Running"

        wait_until(f"load pod {self.name} running", running, timeout, 0.5)

    def stop(self) -> None:
        self.cluster.kubectl("-n", self.namespace, "exec", self.pod(), "--", "touch", STOP_FILE, check=False)

    def result(self, timeout: float = 300) -> LoadResult:
        def finished() -> bool:
            job = kubectl_json(self.cluster, "-n", self.namespace, "get", "job", self.name)
            status = job.get("status", {})
            return bool(status.get("succeeded") or status.get("failed"))

        wait_until(f"load job {self.name} to finish", finished, timeout)
        pod = self.pod()
        logs = self.cluster.kubectl("-n", self.namespace, "logs", pod).stdout
        for line in logs.splitlines():
            if line.startswith(SUMMARY_PREFIX):
                return LoadResult(json.loads(line[len(SUMMARY_PREFIX) :]), pod)
        pytest.fail(f"load pod {pod} printed no summary; its log:\n{logs[-3000:]}")


def share_tolerance(expected: float, n: int, sigmas: float = 4.0) -> float:
    """How far a measured share may sit from `expected` over `n` independent picks: `sigmas`
    standard deviations of a binomial proportion (plus a floor for tiny expectations)."""
    return sigmas * math.sqrt(max(expected * (1 - expected), 0.01) / max(n, 1))

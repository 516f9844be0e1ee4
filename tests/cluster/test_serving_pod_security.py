"""Serving pods built by the operator are admitted where the `restricted` Pod Security Standard
is enforced: the API server's own admission decides, not a hand-written checklist."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlrollout.operator.children import deployment
from mlrollout.operator.planner import DesiredDeployment
from mlrollout.operator.spec import parse_spec

pytestmark = pytest.mark.cluster


# Every field a real cluster's pods may carry: probes, the kubelet's preStop sleep, env references.
FULL = {
    "auth": {"secretRef": {"name": "api-keys"}},
    "feedbackKey": {"secretKeyRef": {"name": "feedback"}},
    "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    "envFrom": [{"configMapRef": {"name": "c"}}],
    "imagePullSecrets": [{"name": "regcred"}],
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "startupTimeoutSeconds": 120,
    "drainSeconds": 10,
}


def serving_pod(namespace: str, *, with_auth: bool) -> dict[str, Any]:
    serving: dict[str, Any] = {"image": "mlrollout-serving:0.1.0", "replicas": 2}
    if with_auth:
        serving.update(FULL)
    md = {
        "metadata": {"name": "churn", "namespace": namespace, "uid": "u-1"},
        "spec": {"model": {"name": "churn", "version": "2"}, "serving": serving,
                 "rollout": {"steps": [{"setWeight": 50}]}},
    }  # fmt: skip
    want = DesiredDeployment("churn-v2-abc", "2", "file:///models/2", 2, "canary", "abc")
    template = deployment(md, parse_spec(md["spec"]), want)["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "churn-v2-probe", **template["metadata"]},
            "spec": template["spec"]}  # fmt: skip


@pytest.mark.parametrize("with_auth", [False, True])
def test_serving_pods_pass_restricted_admission(cluster: Any, namespace: str, with_auth: bool) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = json.dumps(serving_pod(namespace, with_auth=with_auth))
    created = cluster.kubectl(
        "create", "-n", namespace, "--dry-run=server", "-f", "-", input=pod, check=False
    )
    assert created.returncode == 0, created.stderr
    assert "violate" not in created.stderr
    # The apiserver kept what the kubelet acts on (nothing dropped as an unknown or gated field).
    kept = json.loads(
        cluster.kubectl(
            "create", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-", input=pod
        ).stdout
    )["spec"]
    container = kept["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert kept["terminationGracePeriodSeconds"] >= 25
    if with_auth:
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == 10
        assert kept["imagePullSecrets"] == [{"name": "regcred"}]

    # The same namespace does refuse a pod without the hardening: the check has teeth.
    bare = serving_pod(namespace, with_auth=with_auth)
    bare["spec"].pop("securityContext")
    refused = cluster.kubectl(
        "create", "-n", namespace, "--dry-run=server", "-f", "-", input=json.dumps(bare), check=False
    )
    assert refused.returncode != 0
    assert "restricted" in refused.stderr

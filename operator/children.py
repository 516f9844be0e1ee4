"""Desired child objects (serving Deployments and the one Service) as plain manifests. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlrollout.operator.planner import DesiredDeployment
from mlrollout.operator.spec import GROUP, KIND, VERSION, Spec

APP = "mlrollout-serving"
LABEL_MD = "mlrollout.io/model-deployment"
LABEL_TRACK = "mlrollout.io/track"
LABEL_VERSION = "mlrollout.io/version"
LABEL_REVISION = "mlrollout.io/revision"
FIELD_MANAGER = "mlrollout-operator"


def owner_reference(md: Mapping[str, Any]) -> dict[str, Any]:
    meta = md["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(md_name: str, want: DesiredDeployment) -> dict[str, str]:
    """Immutable pod identity: which ModelDeployment, model version and pod template."""
    labels = {"app.kubernetes.io/name": APP, LABEL_MD: md_name, LABEL_VERSION: want.version}
    if want.revision:
        labels[LABEL_REVISION] = want.revision
    return labels


def deployment(md: Mapping[str, Any], spec: Spec, want: DesiredDeployment) -> dict[str, Any]:
    meta = md["metadata"]
    labels = {
        **selector_labels(meta["name"], want),
        LABEL_TRACK: want.track,
        "app.kubernetes.io/managed-by": "mlrollout",
    }
    env = [
        {"name": "MLROLLOUT_MODEL_URI", "value": want.model_uri},
        {"name": "MLROLLOUT_MODEL_NAME", "value": spec.model.name},
        {"name": "MLROLLOUT_MODEL_VERSION", "value": want.version},
        {"name": "MLROLLOUT_PORT", "value": str(spec.serving.port)},
        *({"name": k, "value": v} for k, v in spec.serving.env),
    ]
    container: dict[str, Any] = {
        "name": "serving",
        "image": spec.serving.image,
        "ports": [{"name": "http", "containerPort": spec.serving.port}],
        "env": env,
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        # Meets the `restricted` Pod Security Standard, so namespaces that enforce it admit the pods.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # A read-only root needs a writable /tmp (gunicorn's heartbeat, Prometheus multiprocess files).
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (a pod path, not ours)
    }
    if spec.serving.resources:
        container["resources"] = dict(spec.serving.resources)
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}],
    }
    if spec.serving.node_selector:
        pod_spec["nodeSelector"] = dict(spec.serving.node_selector)
    if spec.serving.auth_secret:
        container["env"].append({"name": "MLROLLOUT_API_KEYS_FILE", "value": "/var/run/mlrollout/auth/keys"})
        container["volumeMounts"].append(
            {"name": "auth", "mountPath": "/var/run/mlrollout/auth", "readOnly": True}
        )
        pod_spec["volumes"].append({"name": "auth", "secret": {"secretName": spec.serving.auth_secret}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": want.name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "replicas": want.replicas,
            "selector": {"matchLabels": selector_labels(meta["name"], want)},
            "template": {
                "metadata": {
                    # The track label is set at creation and then kept current on the pods
                    # themselves (see applier.pod_relabels): changing it in the template would
                    # restart every pod on promotion.
                    "labels": {**selector_labels(meta["name"], want), LABEL_TRACK: want.track},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(spec.serving.port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def service(md: Mapping[str, Any], spec: Spec) -> dict[str, Any]:
    """One Service selecting both tracks: with the replicas router, traffic splits by Ready pods."""
    meta = md["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {"app.kubernetes.io/name": APP, LABEL_MD: meta["name"]},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "selector": {"app.kubernetes.io/name": APP, LABEL_MD: meta["name"]},
            "ports": [{"name": "http", "port": spec.serving.port, "targetPort": "http"}],
        },
    }

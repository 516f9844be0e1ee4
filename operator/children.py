"""Desired child objects (serving Deployments and the one Service) as plain manifests. Pure."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mlrollout.operator.model import DeploymentObs, PodObs, Status
from mlrollout.operator.planner import DesiredDeployment
from mlrollout.operator.planner.shadow import current_shadow, shadow_name
from mlrollout.operator.spec import GROUP, KIND, PROXY_ROUTES, VERSION, Shadow, Spec

APP = "mlrollout-serving"
# Shadow pods (a shadow step's copy of the canary version): an app label of their own, so no
# user-facing Service (all select APP) ever sends them a user's request, whatever the router.
SHADOW_APP = "mlrollout-shadow"
LABEL_APP = "app.kubernetes.io/name"  # APP on serving pods, SHADOW_APP on shadow pods
SHADOW_MOUNT = "/etc/mlrollout/shadow"
SHADOW_KEY = "shadow.json"
# What a stable pod mirrors: an annotation the operator sets on the pod itself, which the pod reads
# through a downward-API volume (kubelet rewrites the file in place): no restart, and no grant
# beyond the pod patch the track labels already need (no ConfigMap write access).
ANNOTATION_SHADOW = "mlrollout.io/shadow"
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
    app = SHADOW_APP if want.shadow else APP
    labels = {LABEL_APP: app, LABEL_MD: md_name, LABEL_VERSION: want.version}
    if want.revision:
        labels[LABEL_REVISION] = want.revision
    return labels


# Probes. Serving loads the model in the gunicorn master before it listens (preload_app), so
# nothing answers until the model is in memory: the startup probe gives that load its budget
# (spec.serving.startupTimeoutSeconds) and holds liveness and readiness back until it passes.
STARTUP_PERIOD_SECONDS = 1  # ready within a second of listening (start-to-ready is a target)
# After preStop's sleep and gunicorn's graceful timeout, a few seconds for the master to exit.
EXIT_MARGIN_SECONDS = 5


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, **timing}


def effective_tracking_uri(spec: Spec, default: str | None = None) -> str | None:
    """The registry the operator resolved the version against: spec.registry.trackingUri, else the
    operator's default (`default`, or the MLROLLOUT_TRACKING_URI the operator process was started
    with, the variable handlers.configure builds its RegistryPool from)."""
    return spec.tracking_uri or default or os.environ.get("MLROLLOUT_TRACKING_URI") or None


def termination_grace_seconds(spec: Spec) -> int:
    """preStop sleep (endpoints and kube-proxy stop sending new connections), then SIGTERM: gunicorn
    finishes in-flight requests within MLROLLOUT_GRACEFUL_TIMEOUT; then a margin to exit."""
    return spec.serving.drain_seconds + spec.serving.graceful_timeout_seconds + EXIT_MARGIN_SECONDS


def deployment(
    md: Mapping[str, Any], spec: Spec, want: DesiredDeployment, *, default_tracking_uri: str | None = None
) -> dict[str, Any]:
    meta = md["metadata"]
    srv = spec.serving
    labels = {
        **selector_labels(meta["name"], want),
        LABEL_TRACK: want.track,
        "app.kubernetes.io/managed-by": "mlrollout",
    }
    env: list[dict[str, Any]] = [
        {"name": "MLROLLOUT_MODEL_URI", "value": want.model_uri},
        {"name": "MLROLLOUT_MODEL_NAME", "value": spec.model.name},
        {"name": "MLROLLOUT_MODEL_VERSION", "value": want.version},
        {"name": "MLROLLOUT_PORT", "value": str(srv.port)},
    ]
    if not srv.sets_env("MLROLLOUT_TRACK"):
        # The metrics' `track` label as created, like the template's track label. Analysis reads
        # Prometheus' target label `track` (the pod label, relabelled in place on promotion; see
        # METRICS_CONTRACT.md); serving's own value becomes `exported_track`, the role at creation.
        # A literal, not a downward-API reference: env is read once at start either way.
        env.append({"name": "MLROLLOUT_TRACK", "value": want.track})
    tracking_uri = effective_tracking_uri(spec, default_tracking_uri)
    if tracking_uri and not srv.sets_env("MLFLOW_TRACKING_URI"):
        # models:/ and mlflow-artifacts: URIs download through the registry that resolved them.
        env.append({"name": "MLFLOW_TRACKING_URI", "value": tracking_uri})
    if srv.feedback_key:
        # One key for every pod of every track: a prediction token verifies on whichever pod the
        # Service sends its feedback to.
        ref = {"name": srv.feedback_key.name, "key": srv.feedback_key.key}
        env.append({"name": "MLROLLOUT_FEEDBACK_KEY", "valueFrom": {"secretKeyRef": ref}})
    # What to mirror: the pod's own shadow annotation as a file (empty when absent: no shadow).
    env.append({"name": "MLROLLOUT_SHADOW_CONFIG", "value": f"{SHADOW_MOUNT}/{SHADOW_KEY}"})
    env.extend(var.manifest() for var in srv.env)
    container: dict[str, Any] = {
        "name": "serving",
        "image": srv.image,
        "ports": [{"name": "http", "containerPort": srv.port, "protocol": "TCP"}],
        "env": env,
        "startupProbe": _probe(
            "/healthz",
            periodSeconds=STARTUP_PERIOD_SECONDS,
            timeoutSeconds=1,
            failureThreshold=max(1, -(-srv.startup_timeout_seconds // STARTUP_PERIOD_SECONDS)),
        ),
        # Readiness: the model answers (/readyz is 503 until it is loaded); out of the Service fast.
        "readinessProbe": _probe("/readyz", periodSeconds=2, timeoutSeconds=2, failureThreshold=2),
        # Liveness: the server is not wedged; generous, so a busy pod is not killed for a slow reply.
        "livenessProbe": _probe("/healthz", periodSeconds=10, timeoutSeconds=5, failureThreshold=3),
        # Meets the `restricted` Pod Security Standard, so namespaces that enforce it admit the pods.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # A read-only root needs a writable /tmp (gunicorn's heartbeat, Prometheus multiprocess files).
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a pod path, not ours)
            {"name": "shadow", "mountPath": SHADOW_MOUNT, "readOnly": True},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",  # a failed model load says why
    }
    if srv.drain_seconds:
        # The kubelet's own sleep (PodLifecycleSleepAction, on by default since 1.30): no binary
        # needed in the image. Meanwhile the pod is already out of the Service's endpoints.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": srv.drain_seconds}}}
    if srv.env_from:
        container["envFrom"] = [dict(e) for e in srv.env_from]  # env (ours included) wins over these
    if srv.image_pull_policy:
        container["imagePullPolicy"] = srv.image_pull_policy
    if srv.resources:
        container["resources"] = dict(srv.resources)
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
            {
                "name": "shadow",
                "downwardAPI": {
                    "items": [
                        {
                            "path": SHADOW_KEY,
                            "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_SHADOW}']"},
                        }
                    ]
                },
            },
        ],
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        # No *_SERVICE_HOST/*_PORT variables for every Service in the namespace: serving reads none,
        # and a Service named e.g. `mlrollout` or `mlflow` would otherwise inject MLROLLOUT_*/MLFLOW_*.
        "enableServiceLinks": False,
    }
    if srv.service_account:
        pod_spec["serviceAccountName"] = srv.service_account
    else:
        # Serving never calls the Kubernetes API: the namespace's default token stays out of the pod.
        pod_spec["automountServiceAccountToken"] = False
    if srv.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in srv.image_pull_secrets]
    if srv.node_selector:
        pod_spec["nodeSelector"] = dict(srv.node_selector)
    if srv.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in srv.tolerations]
    if srv.affinity:
        pod_spec["affinity"] = dict(srv.affinity)
    if srv.priority_class:
        pod_spec["priorityClassName"] = srv.priority_class
    if srv.auth_secret:
        container["env"].append({"name": "MLROLLOUT_API_KEYS_FILE", "value": "/var/run/mlrollout/auth/keys"})
        container["volumeMounts"].append(
            {"name": "auth", "mountPath": "/var/run/mlrollout/auth", "readOnly": True}
        )
        pod_spec["volumes"].append({"name": "auth", "secret": {"secretName": srv.auth_secret}})
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
                        "prometheus.io/port": str(srv.port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def service(md: Mapping[str, Any], spec: Spec, track: str | None = None) -> dict[str, Any]:
    """The Service selecting both tracks (with the replicas router traffic splits by Ready pods),
    or with `track` the one selecting that track's pods only, `<md>-<track>` (a proxy's backend)."""
    meta = md["metadata"]
    selector = {"app.kubernetes.io/name": APP, LABEL_MD: meta["name"]}
    labels = dict(selector)
    if track is not None:
        selector[LABEL_TRACK] = track
        labels[LABEL_TRACK] = track
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"] if track is None else f"{meta['name']}-{track}",
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": spec.serving.port, "targetPort": "http"}],
        },
    }


def services(md: Mapping[str, Any], spec: Spec) -> list[dict[str, Any]]:
    """Every Service of a ModelDeployment: the shared one, plus one per track when a proxy routes
    by weight (the gatewayAPI router's backendRefs and the nginx router's Ingress paths name them),
    plus `<md>-shadow` when a step is a shadow step (only the stable pods' copies reach it)."""
    out = [service(md, spec)]
    if isinstance(spec.router, PROXY_ROUTES):
        out += [service(md, spec, "stable"), service(md, spec, "canary")]
    if any(isinstance(step, Shadow) for step in spec.steps):
        out.append(shadow_service(md, spec))
    return out


def canary_ingress(md: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The nginx router's canary Ingress (routers/nginx.py decides its name, annotations and rules),
    owned by the ModelDeployment so that it goes with it."""
    meta = md["metadata"]
    out = json.loads(json.dumps(manifest))
    out["metadata"] = {
        **out["metadata"],
        "namespace": meta["namespace"],
        "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER, LABEL_MD: meta["name"]},
        "ownerReferences": [owner_reference(md)],
    }
    return dict(out)


def shadow_service_name(md_name: str) -> str:
    return f"{md_name}-shadow"


def shadow_service(md: Mapping[str, Any], spec: Spec) -> dict[str, Any]:
    """The Service in front of the shadow pods (their own app label: see SHADOW_APP)."""
    meta = md["metadata"]
    selector = {"app.kubernetes.io/name": SHADOW_APP, LABEL_MD: meta["name"]}
    svc = service(md, spec)
    svc["metadata"]["name"] = shadow_service_name(meta["name"])
    svc["metadata"]["labels"] = dict(selector)
    svc["spec"]["selector"] = selector
    return svc


def shadow_settings(
    spec: Spec, namespace: str, md_name: str, status: Status, observed: Mapping[str, DeploymentObs]
) -> str:
    """What the stable pods mirror (serving/shadow_settings.py) as the annotation's JSON: the shadow
    Service while the canary is on a shadow step and a shadow pod is Ready (copies sent to pods still
    loading the model would count as the canary's errors); "" (no annotation) otherwise."""
    step = current_shadow(spec, status)
    if step is None or status.canary is None:
        return ""
    pods = observed.get(shadow_name(status.canary.deployment))
    if pods is None or pods.ready_replicas < 1:
        return ""
    settings = {
        "target": f"http://{shadow_service_name(md_name)}.{namespace}.svc:{spec.serving.port}",
        "version": status.canary.version,
        "percent": step.percent,
        "timeoutMs": step.timeout_ms,
        "tolerance": step.tolerance,
        "recordInputs": step.record_inputs,
    }
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def shadow_annotations(
    md: Mapping[str, Any],
    spec: Spec,
    status: Status,
    observed: Mapping[str, DeploymentObs],
    pods: Sequence[PodObs],
) -> list[tuple[str, str | None]]:
    """(pod, annotation or None to remove) for the pods whose shadow annotation is not what it
    should be: the settings on the stable revision's pods, nothing on any other pod."""
    meta = md["metadata"]
    want = shadow_settings(spec, meta["namespace"], meta["name"], status, observed)
    stable = (status.stable.version, status.stable.serving_hash) if status.stable else None
    out: list[tuple[str, str | None]] = []
    for pod in pods:
        wanted = want if (pod.version, pod.revision) == stable else ""
        if pod.shadow != wanted:
            out.append((pod.name, wanted or None))
    return out

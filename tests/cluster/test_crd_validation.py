"""`kubectl apply` rejects invalid ModelDeployments, and the message names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cluster.helpers import Kubectl, model_deployment

pytestmark = pytest.mark.cluster


def _with(path: str, value: Any, *, delete: bool = False) -> dict[str, Any]:
    """A valid ModelDeployment with one field at dotted `path` (list indexes as ints) changed."""
    md = copy.deepcopy(model_deployment("bad", "1"))
    node: Any = md
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    if delete:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return md


def _nginx_with_two_headers() -> dict[str, Any]:
    md = _with("spec.rollout.trafficRouter", {"nginx": {"ingress": "web"}})
    headers = [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "2"}]
    md["spec"]["rollout"]["steps"][0] = {"setHeaderRoute": {"headers": headers}}
    return md


INVALID = [
    (_with("spec.model", None, delete=True), "spec.model"),
    (
        _with("spec.model", {"name": "m", "version": "1", "alias": "champion"}),
        "set exactly one of version or alias",
    ),
    (_with("spec.model", {"name": "m"}), "set exactly one of version or alias"),
    (_with("spec.model.version", "v1"), "spec.model.version"),
    (_with("spec.model.name", ""), "spec.model.name"),
    (_with("spec.gate.threshold", 1.5), "spec.gate.threshold"),
    (_with("spec.gate.maxRegression", -0.1), "spec.gate.maxRegression"),
    (_with("spec.gate.maxRegression", 2), "spec.gate.maxRegression"),
    (_with("spec.gate", {"metric": "rmse", "direction": "lowerIsBetter"}), "spec.gate.threshold"),
    (_with("spec.gate", {"metric": "rmse", "direction": "sideways", "threshold": 3}), "spec.gate.direction"),
    (_with("spec.serving.image", None, delete=True), "spec.serving.image"),
    (_with("spec.serving.replicas", 0), "spec.serving.replicas"),
    (_with("spec.serving.port", 70000), "spec.serving.port"),
    (_with("spec.rollout.steps", []), "spec.rollout.steps"),
    (_with("spec.rollout.steps.0.setWeight", 150), "spec.rollout.steps[0].setWeight"),
    (_with("spec.rollout.steps.0", {"setWeight": 10, "pause": {}}), "each step sets exactly one"),
    (_with("spec.rollout.steps.1.pause", {"duration": "soon"}), "spec.rollout.steps[1].pause.duration"),
    (_with("spec.rollout.steps", [{"pause": {}}]), "at least one setWeight step must be above 0"),
    (_with("spec.rollout.progressDeadlineSeconds", 1), "spec.rollout.progressDeadlineSeconds"),
    (_with("spec.rollout.trafficRouter", {"nginx": {}}), "spec.rollout.trafficRouter.nginx.ingress"),
    (
        _with("spec.rollout.trafficRouter", {"nginx": {"ingress": "Bad_Name"}}),
        "spec.rollout.trafficRouter.nginx.ingress",
    ),
    (
        _with("spec.rollout.trafficRouter", {"nginx": {"ingress": "web", "canaryReplicas": 0}}),
        "spec.rollout.trafficRouter.nginx.canaryReplicas",
    ),
    (
        _with("spec.rollout.trafficRouter", {"nginx": {"ingress": "web", "scaleDownDelaySeconds": 4000}}),
        "spec.rollout.trafficRouter.nginx.scaleDownDelaySeconds",
    ),
    (
        _with("spec.rollout.trafficRouter", {"nginx": {"ingress": "web"}, "gatewayAPI": {"httpRoute": "r"}}),
        "set exactly one router (supported: replicas, gatewayAPI, nginx)",
    ),
    (_nginx_with_two_headers(), "the nginx router (spec.rollout.trafficRouter.nginx) matches one header"),
    (
        _with("spec.rollout.trafficRouter", {"gatewayAPI": {}}),
        "spec.rollout.trafficRouter.gatewayAPI.httpRoute",
    ),
    (
        _with("spec.rollout.trafficRouter", {"gatewayAPI": {"httpRoute": "Bad_Name"}}),
        "spec.rollout.trafficRouter.gatewayAPI.httpRoute",
    ),
    (
        _with("spec.rollout.trafficRouter", {"gatewayAPI": {"httpRoute": "r", "canaryReplicas": 0}}),
        "spec.rollout.trafficRouter.gatewayAPI.canaryReplicas",
    ),
    (
        _with("spec.rollout.trafficRouter", {"gatewayAPI": {"httpRoute": "r", "scaleDownDelaySeconds": -1}}),
        "spec.rollout.trafficRouter.gatewayAPI.scaleDownDelaySeconds",
    ),
    (
        _with("spec.rollout.trafficRouter", {"gatewayAPI": {"httpRoute": "r"}, "replicas": {}}),
        "set exactly one router",
    ),
    (
        _with("spec.rollout.steps.0", {"setHeaderRoute": {"headers": [{"name": "X-A", "value": "1"}]}}),
        "setHeaderRoute needs spec.rollout.trafficRouter.gatewayAPI",
    ),
    (
        _with(
            "spec.rollout.steps.0", {"setHeaderRoute": {"headers": [{"name": "bad header", "value": "1"}]}}
        ),
        "spec.rollout.steps[0].setHeaderRoute.headers[0].name",
    ),
    (_with("spec.serving.env", [{"name": "MLROLLOUT_MODEL_URI", "value": "x"}]), "spec.serving.env[0]"),
    (_with("spec.intent", {"id": "a", "promote": "step", "abort": True}), "spec.intent"),
    (_with("spec.intent", {"id": "a", "promote": "sideways"}), "spec.intent.promote"),
    (_with("spec.intent", {"id": "a", "undo": {"version": "2"}}), "spec.intent.undo.version must equal"),
    (_with("spec.registry", {"trackingUri": "mlflow:5000"}), "spec.registry.trackingUri"),
    (_with("metadata.name", "x" * 60), "metadata.name: at most 52 characters"),
    (_with("spec.colour", "blue"), "spec.colour"),
    # The serving pod's real-cluster fields.
    (_with("spec.serving.startupTimeoutSeconds", 5), "spec.serving.startupTimeoutSeconds"),
    (_with("spec.serving.startupTimeoutSeconds", 7200), "spec.serving.startupTimeoutSeconds"),
    (_with("spec.serving.drainSeconds", -1), "spec.serving.drainSeconds"),
    (_with("spec.serving.drainSeconds", 121), "spec.serving.drainSeconds"),
    (
        _with(
            "spec.serving.env", [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]
        ),
        "set value or valueFrom, not both",
    ),
    (
        _with(
            "spec.serving.env",
            [
                {
                    "name": "A",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}, "fieldRef": {"fieldPath": "x"}},
                }
            ],
        ),
        "valueFrom: set exactly one of",
    ),
    (
        _with("spec.serving.env", [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
        "spec.serving.env[0].valueFrom.secretKeyRef.key",
    ),
    (
        _with("spec.serving.env", [{"name": "MLROLLOUT_GRACEFUL_TIMEOUT", "value": "20s"}]),
        "MLROLLOUT_GRACEFUL_TIMEOUT must be a literal whole number",
    ),
    (
        _with("spec.serving.envFrom", [{"prefix": "X_"}]),
        "envFrom: set exactly one of secretRef or configMapRef",
    ),
    (_with("spec.serving.imagePullPolicy", "Sometimes"), "spec.serving.imagePullPolicy"),
    (
        _with("spec.serving.imagePullSecrets", [{"name": "Not_A_Name"}]),
        "spec.serving.imagePullSecrets[0].name",
    ),
    (_with("spec.serving.serviceAccountName", "Bad Name"), "spec.serving.serviceAccountName"),
    (
        _with("spec.serving.tolerations", [{"key": "k", "operator": "Maybe"}]),
        "spec.serving.tolerations[0].operator",
    ),
    (
        _with("spec.serving.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}]),
        "operator Exists takes no value",
    ),
    (_with("spec.serving.feedbackKey", {"secretKeyRef": {}}), "spec.serving.feedbackKey.secretKeyRef.name"),
]


@pytest.mark.parametrize(("manifest", "field"), INVALID, ids=[f for _, f in INVALID])
def test_invalid_model_deployment_is_rejected(
    crd: Any, kc: Kubectl, manifest: dict[str, Any], field: str
) -> None:
    proc = kc.apply(manifest, check=False)
    assert proc.returncode != 0, f"accepted an invalid ModelDeployment (expected an error naming {field})"
    assert field in proc.stderr, proc.stderr


def test_valid_model_deployment_gets_defaults(crd: Any, kc: Kubectl) -> None:
    md = model_deployment("defaults", "1")
    del md["spec"]["rollout"]
    del md["spec"]["gate"]
    kc.apply(md)
    spec = kc.md("defaults")["spec"]
    assert spec["gate"] == {"metric": "f1_score", "threshold": 0, "direction": "higherIsBetter"}
    assert spec["rollout"]["progressDeadlineSeconds"] == 600
    assert spec["rollout"]["trafficRouter"] == {"replicas": {}}
    assert spec["rollout"]["steps"][0] == {"setWeight": 10}
    assert spec["serving"]["port"] == 8080
    assert spec["paused"] is False
    assert spec["revisionHistoryLimit"] == 3
    # Filled in on read for objects stored before these fields existed too: the parser sees its
    # defaults, which keep the revision hash (tests/operator/test_serving_pod.py).
    assert spec["serving"]["startupTimeoutSeconds"] == 600
    assert spec["serving"]["drainSeconds"] == 5


def test_a_lower_is_better_gate_takes_a_threshold_in_the_metrics_unit(crd: Any, kc: Kubectl) -> None:
    md = model_deployment("regressor", "1")
    md["spec"]["gate"] = {
        "metric": "rmse",
        "direction": "lowerIsBetter",
        "threshold": 2500,
        "maxRegression": 50,
    }
    kc.apply(md)
    assert kc.md("regressor")["spec"]["gate"] == md["spec"]["gate"]


def test_serving_pod_fields_are_accepted_and_kept(crd: Any, kc: Kubectl) -> None:
    md = model_deployment("podfields", "1")
    md["spec"]["serving"].update(
        startupTimeoutSeconds=120,
        drainSeconds=0,
        env=[
            {"name": "MLROLLOUT_GRACEFUL_TIMEOUT", "value": "30"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
            {"name": "TUNING", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": "1Mi"}}},
        ],
        envFrom=[{"configMapRef": {"name": "c"}},
                 {"prefix": "S_", "secretRef": {"name": "s", "optional": True}}],
        feedbackKey={"secretKeyRef": {"name": "fb"}},
        imagePullPolicy="IfNotPresent",
        imagePullSecrets=[{"name": "regcred"}],
        serviceAccountName="serving",
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ml"]}]}]}}},
        priorityClassName="serving",
    )  # fmt: skip
    kc.apply(md)
    stored = kc.md("podfields")["spec"]["serving"]
    for key, value in md["spec"]["serving"].items():
        assert stored[key] == value, key  # nothing pruned


@pytest.mark.parametrize(
    "example",
    [
        "modeldeployment.yaml",
        "modeldeployment-minimal.yaml",
        "gateway-api/modeldeployment.yaml",
        "nginx/modeldeployment.yaml",
    ],
)
def test_examples_are_accepted_by_the_api_server(crd: Any, kc: Kubectl, example: str) -> None:
    path = crd.parent.parent / "examples" / example
    proc = kc.run("apply", "--dry-run=server", "-f", str(path))
    assert "created (server dry run)" in proc.stdout

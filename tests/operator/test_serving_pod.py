"""The serving pod template for a real kubelet: probes, drain, env and scheduling from spec.serving,
and the revision hash that existing ModelDeployments keep across an operator upgrade."""

from __future__ import annotations

from typing import Any

import pytest
from mlrollout.operator.children import deployment, termination_grace_seconds
from mlrollout.operator.planner import DesiredDeployment
from mlrollout.operator.spec import InvalidSpec, parse_spec

WANT = DesiredDeployment("churn-v2-abc123", "2", "models:/churn/2", 3, "canary", "abc123")


def md(**serving: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "churn", "namespace": "ml", "uid": "u-1"},
        "spec": {"model": {"name": "churn", "version": "2"}, "serving": {"image": "serve:1", **serving}},
    }


def build(default_tracking_uri: str | None = None, **serving: Any) -> dict[str, Any]:
    obj = md(**serving)
    manifest = deployment(obj, parse_spec(obj["spec"]), WANT, default_tracking_uri=default_tracking_uri)
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}


@pytest.fixture(autouse=True)
def _no_operator_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLROLLOUT_TRACKING_URI", raising=False)


@pytest.mark.parametrize(
    ("serving", "failures"),
    [({}, 600), ({"startupTimeoutSeconds": 60}, 60), ({"startupTimeoutSeconds": 3600}, 3600)],
)
def test_startup_probe_budget_holds_back_liveness(serving: dict[str, Any], failures: int) -> None:
    c = build(**serving)["containers"][0]
    startup = c["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] == failures
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"  # 503 until the model answers
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # A 60 s load with the default budget is never restarted: liveness only runs after startup.
    assert "initialDelaySeconds" not in c["livenessProbe"]


@pytest.mark.parametrize(
    ("serving", "sleep", "grace"),
    [
        ({}, 5, 5 + 20 + 5),
        ({"drainSeconds": 15}, 15, 15 + 20 + 5),
        ({"env": [{"name": "MLROLLOUT_GRACEFUL_TIMEOUT", "value": "60"}]}, 5, 5 + 60 + 5),
        ({"drainSeconds": 0}, None, 0 + 20 + 5),
    ],
)
def test_drain_then_graceful_shutdown_fits_the_grace_period(
    serving: dict[str, Any], sleep: int | None, grace: int
) -> None:
    pod = build(**serving)
    lifecycle = pod["containers"][0].get("lifecycle")
    if sleep is None:
        assert lifecycle is None
    else:
        assert lifecycle == {"preStop": {"sleep": {"seconds": sleep}}}  # the kubelet's own sleep
    assert pod["terminationGracePeriodSeconds"] == grace
    assert termination_grace_seconds(parse_spec(md(**serving)["spec"])) == grace


@pytest.mark.parametrize(
    ("spec_uri", "default", "user_env", "want"),
    [
        (None, None, [], None),  # nowhere to download from: left unset, as before
        (None, "http://mlflow.mlflow:5000", [], "http://mlflow.mlflow:5000"),
        ("http://reg:5000", "http://mlflow.mlflow:5000", [], "http://reg:5000"),
        ("http://reg:5000", None, [{"name": "MLFLOW_TRACKING_URI", "value": "http://mine"}], "http://mine"),
    ],
)
def test_tracking_uri_is_the_registry_that_resolved_the_version(
    spec_uri: str | None, default: str | None, user_env: list[dict[str, str]], want: str | None
) -> None:
    obj = md(env=user_env)
    if spec_uri:
        obj["spec"]["registry"] = {"trackingUri": spec_uri}
    pod = deployment(obj, parse_spec(obj["spec"]), WANT, default_tracking_uri=default)["spec"]["template"]
    names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    assert names.count("MLFLOW_TRACKING_URI") == (0 if want is None else 1)
    assert env_of(pod["spec"]).get("MLFLOW_TRACKING_URI") == want


def test_tracking_uri_defaults_to_the_operators_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLROLLOUT_TRACKING_URI", "http://mlflow.mlflow:5000")
    assert env_of(build())["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow:5000"


def test_env_references_env_from_and_the_track() -> None:
    secret = {"secretKeyRef": {"name": "mlflow-auth", "key": "token"}}
    pod = build(
        env=[
            {"name": "LOG", "value": "debug"},
            {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": secret},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        envFrom=[{"configMapRef": {"name": "tuning"}}, {"prefix": "S_", "secretRef": {"name": "extra"}}],
    )
    c = pod["containers"][0]
    env = env_of(pod)
    assert env["LOG"] == "debug"
    assert env["MLFLOW_TRACKING_TOKEN"] == secret
    assert env["MLROLLOUT_TRACK"] == "canary"  # the metrics' track as created (WANT is a canary)
    assert c["envFrom"] == [
        {"configMapRef": {"name": "tuning"}},
        {"prefix": "S_", "secretRef": {"name": "extra"}},
    ]
    # The operator's variables come first, the user's after (a later duplicate wins in a container).
    names = [e["name"] for e in c["env"]]
    assert names[:4] == [
        "MLROLLOUT_MODEL_URI",
        "MLROLLOUT_MODEL_NAME",
        "MLROLLOUT_MODEL_VERSION",
        "MLROLLOUT_PORT",
    ]


def test_user_track_env_replaces_the_operators() -> None:
    env = [e for e in build(env=[{"name": "MLROLLOUT_TRACK", "value": "x"}])["containers"][0]["env"]]
    assert [e for e in env if e["name"] == "MLROLLOUT_TRACK"] == [{"name": "MLROLLOUT_TRACK", "value": "x"}]


@pytest.mark.parametrize(
    ("feedback", "ref"),
    [
        (None, None),
        ({"secretKeyRef": {"name": "churn-feedback"}}, {"name": "churn-feedback", "key": "key"}),
        ({"secretKeyRef": {"name": "fb", "key": "hmac"}}, {"name": "fb", "key": "hmac"}),
    ],
)
def test_feedback_key_from_one_secret_for_every_track(
    feedback: dict[str, Any] | None, ref: dict[str, str] | None
) -> None:
    env = env_of(build(**({"feedbackKey": feedback} if feedback else {})))
    assert env.get("MLROLLOUT_FEEDBACK_KEY") == ({"secretKeyRef": ref} if ref else None)


@pytest.mark.parametrize(
    ("serving", "field", "value"),
    [
        ({}, "automountServiceAccountToken", False),
        ({}, "enableServiceLinks", False),
        ({"serviceAccountName": "churn-reader"}, "serviceAccountName", "churn-reader"),
        ({"imagePullSecrets": [{"name": "regcred"}]}, "imagePullSecrets", [{"name": "regcred"}]),
        (
            {"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
            "tolerations",
            [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        ({"nodeSelector": {"pool": "ml"}}, "nodeSelector", {"pool": "ml"}),
        (
            {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}},
            "affinity",
            {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        ),
        ({"priorityClassName": "serving"}, "priorityClassName", "serving"),
    ],
)
def test_pod_level_fields(serving: dict[str, Any], field: str, value: Any) -> None:
    assert build(**serving)[field] == value


def test_service_account_keeps_its_own_token_policy() -> None:
    assert "automountServiceAccountToken" not in build(serviceAccountName="churn-reader")


@pytest.mark.parametrize(("policy", "present"), [(None, False), ("IfNotPresent", True), ("Never", True)])
def test_image_pull_policy(policy: str | None, present: bool) -> None:
    c = build(**({"imagePullPolicy": policy} if policy else {}))["containers"][0]
    assert c.get("imagePullPolicy") == policy
    assert ("imagePullPolicy" in c) is present


def test_pod_stays_restricted_with_every_field_set() -> None:
    pod = build(
        serviceAccountName="sa",
        imagePullSecrets=[{"name": "r"}],
        feedbackKey={"secretKeyRef": {"name": "fb"}},
        env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    )
    c = pod["containers"][0]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["limits"] == {"memory": "1Gi"}


# Hashes computed by the v0.1 parser (before these fields existed) for the same specs: an operator
# upgrade must not give existing ModelDeployments a new revision (a canary of the same version).
OLD_HASHES = [
    ({}, "67fac0"),
    ({"startupTimeoutSeconds": 600, "drainSeconds": 5}, "67fac0"),  # CRD defaults, filled on read
    (
        {
            "replicas": 4,
            "port": 9000,
            "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
            "nodeSelector": {"pool": "gpu"},
            "env": [{"name": "LOG", "value": "debug"}, {"name": "EMPTY"}],
            "auth": {"secretRef": {"name": "keys"}},
        },
        "352a1a",
    ),
]


@pytest.mark.parametrize(("serving", "digest"), OLD_HASHES)
def test_existing_specs_keep_their_revision_hash(serving: dict[str, Any], digest: str) -> None:
    assert parse_spec(md(**serving)["spec"]).serving.template_hash == digest


@pytest.mark.parametrize(
    "change",
    [
        {"startupTimeoutSeconds": 900},
        {"drainSeconds": 10},
        {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
        {"envFrom": [{"configMapRef": {"name": "c"}}]},
        {"imagePullPolicy": "Always"},
        {"imagePullSecrets": [{"name": "r"}]},
        {"serviceAccountName": "sa"},
        {"tolerations": [{"key": "k", "operator": "Exists"}]},
        {"affinity": {"nodeAffinity": {}}},
        {"affinity": {"nodeAffinity": {"x": 1}}},
        {"priorityClassName": "p"},
        {"feedbackKey": {"secretKeyRef": {"name": "fb"}}},
    ],
)
def test_a_new_field_set_is_a_new_revision(change: dict[str, Any]) -> None:
    assert parse_spec(md(**change)["spec"]).serving.template_hash != "67fac0"


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({"startupTimeoutSeconds": 5}, "spec.serving.startupTimeoutSeconds"),
        ({"startupTimeoutSeconds": 7200}, "spec.serving.startupTimeoutSeconds"),
        ({"drainSeconds": -1}, "spec.serving.drainSeconds"),
        ({"drainSeconds": 600}, "spec.serving.drainSeconds"),
        (
            {"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]},
            "spec.serving.env[0]",
        ),
        ({"env": [{"name": "A", "valueFrom": {}}]}, "spec.serving.env[0].valueFrom"),
        ({"env": [{"name": "MLROLLOUT_GRACEFUL_TIMEOUT", "value": "20s"}]}, "spec.serving.env[0].value"),
        ({"envFrom": [{"prefix": "X"}]}, "spec.serving.envFrom[0]"),
        ({"envFrom": [{"secretRef": {}}]}, "spec.serving.envFrom[0].secretRef.name"),
        ({"imagePullPolicy": "Sometimes"}, "spec.serving.imagePullPolicy"),
        ({"imagePullSecrets": [{}]}, "spec.serving.imagePullSecrets[0].name"),
        ({"tolerations": {"key": "x"}}, "spec.serving.tolerations"),
        ({"feedbackKey": {"secretKeyRef": {}}}, "spec.serving.feedbackKey.secretKeyRef.name"),
        (
            {
                "feedbackKey": {"secretKeyRef": {"name": "fb"}},
                "env": [{"name": "MLROLLOUT_FEEDBACK_KEY", "value": "k"}],
            },
            "spec.serving.feedbackKey",
        ),
    ],
)
def test_invalid_serving_fields_name_the_field(serving: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_spec(md(**serving)["spec"])
    assert str(err.value).startswith(field)


def test_default_pod_env_is_literal() -> None:
    """Without references in the spec, every variable is a plain value (readers of env[].value rely on it)."""
    assert all("value" in e for e in build(default_tracking_uri="http://mlflow:5000")["containers"][0]["env"])

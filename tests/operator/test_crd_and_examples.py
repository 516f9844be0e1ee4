"""The CRD file is structural and the commented examples parse as valid specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mlrollout.operator.children import deployment
from mlrollout.operator.planner import DesiredDeployment
from mlrollout.operator.spec import (
    DEFAULT_DRAIN_SECONDS,
    DEFAULT_STARTUP_TIMEOUT_SECONDS,
    MAX_DRAIN_SECONDS,
    MAX_STARTUP_TIMEOUT_SECONDS,
    MIN_STARTUP_TIMEOUT_SECONDS,
    parse_spec,
)

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "modeldeployment.yaml").read_text())
EXAMPLES = sorted((ROOT / "examples").glob("modeldeployment*.yaml"))


def test_crd_identity_and_columns() -> None:
    assert CRD["metadata"]["name"] == "modeldeployments.mlrollout.io"
    assert CRD["spec"]["names"]["shortNames"] == ["md"]
    version = CRD["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Model",
        "Stable",
        "Canary",
        "Weight",
        "Phase",
        "Age",
    ]


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    """Structural schema: every node has a type unless it is int-or-string or preserves unknowns."""
    problems = []
    if (
        "type" not in schema
        and not schema.get("x-kubernetes-int-or-string")
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        problems.append(path)
    for name, sub in (schema.get("properties") or {}).items():
        problems += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += _walk(schema["additionalProperties"], f"{path}{{}}")
    return problems


def test_crd_schema_is_structural() -> None:
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema, "") == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_valid_specs(path: Path) -> None:
    doc = [d for d in yaml.safe_load_all(path.read_text()) if d][-1]  # after the Secrets it references
    assert doc["kind"] == "ModelDeployment"
    spec = parse_spec(doc["spec"])
    assert spec.model.name


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


def test_crd_defaults_and_bounds_match_the_parser() -> None:
    serving = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "serving"
    ]["properties"]
    startup, drain = serving["startupTimeoutSeconds"], serving["drainSeconds"]
    assert (startup["default"], startup["minimum"], startup["maximum"]) == (
        DEFAULT_STARTUP_TIMEOUT_SECONDS,
        MIN_STARTUP_TIMEOUT_SECONDS,
        MAX_STARTUP_TIMEOUT_SECONDS,
    )
    assert (drain["default"], drain["minimum"], drain["maximum"]) == (
        DEFAULT_DRAIN_SECONDS,
        0,
        MAX_DRAIN_SECONDS,
    )


def test_full_example_shows_the_pod_fields_and_builds_a_pod() -> None:
    doc = list(yaml.safe_load_all((ROOT / "examples" / "modeldeployment.yaml").read_text()))[-1]
    spec = parse_spec(doc["spec"])
    want = DesiredDeployment("churn-v7-abc", "7", "models:/churn/7", 1, "stable", "abc")
    doc["metadata"].update(namespace="ml", uid="u")
    pod = deployment(doc, spec, want)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.mlflow:5000"
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-credentials"
    assert env["MLROLLOUT_FEEDBACK_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "churn-feedback",
        "key": "key",
    }
    assert container["envFrom"]
    assert container["startupProbe"]["failureThreshold"] == 600
    assert pod["terminationGracePeriodSeconds"] == 30
    for key in ("imagePullSecrets", "serviceAccountName", "tolerations", "affinity", "nodeSelector"):
        assert pod[key], key

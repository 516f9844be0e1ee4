"""The CRD file is structural and the commented examples parse as valid specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mlrollout.operator.spec import parse_spec

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
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "ModelDeployment"
    spec = parse_spec(doc["spec"])
    assert spec.model.name


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2

"""The examples can be applied as they are: every Secret and ServiceAccount a ModelDeployment's pods
need (API keys, the feedback key, the service account) is created in the same file, and the serving
image is the one `make images` builds (loaded into the cluster or pushed, see the README)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name != "batchprediction.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def needed(serving: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) the serving pods cannot start without (optional references excluded)."""
    out: set[tuple[str, str]] = set()
    if (auth := serving.get("auth") or {}).get("secretRef"):
        out.add(("Secret", auth["secretRef"]["name"]))
    if ref := (serving.get("feedbackKey") or {}).get("secretKeyRef"):
        out.add(("Secret", ref["name"]))
    if serving.get("serviceAccountName"):
        out.add(("ServiceAccount", serving["serviceAccountName"]))
    for env in serving.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref and not ref.get("optional"):
            out.add(("Secret", ref["name"]))
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_an_example_creates_what_its_pods_reference(path: Path) -> None:
    docs = documents(path)
    created = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for md in (d for d in docs if d["kind"] == "ModelDeployment"):
        serving = md["spec"]["serving"]
        assert needed(serving) <= created, f"{path.name}: create {sorted(needed(serving) - created)} too"
        assert serving["image"].split("/")[-1] == "mlrollout-serving:0.1.0", serving["image"]


def test_the_getting_started_example_has_an_api_key_and_the_default_registry() -> None:
    docs = documents(ROOT / "examples" / "modeldeployment-getting-started.yaml")
    secret, md = docs
    assert secret["stringData"]["keys"].strip()
    assert md["spec"]["serving"]["auth"]["secretRef"]["name"] == secret["metadata"]["name"]
    mlflow = documents(ROOT / "examples" / "mlflow.yaml")
    service = next(d for d in mlflow if d["kind"] == "Service")
    host = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}:{service['spec']['ports'][0]['port']}"
    assert md["spec"]["registry"]["trackingUri"] == host

"""The API server (CRD schema + CEL) refuses bad shadow steps and agreement metrics, naming the field,
and accepts the shadow example."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cluster.helpers import Kubectl, model_deployment

pytestmark = pytest.mark.cluster

ANALYSIS = {"prometheus": {"address": "http://prometheus:9090"}}


def with_steps(steps: list[dict[str, Any]], metrics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    md = copy.deepcopy(model_deployment("shadow-bad", "1"))
    md["spec"]["rollout"]["steps"] = steps
    if metrics is not None:
        md["spec"]["rollout"]["analysis"] = {**ANALYSIS, "metrics": metrics}
    return md


LAST = {"setWeight": 100}
INVALID = [
    (with_steps([{"shadow": {"percent": 50}}, LAST]), "spec.rollout.steps[0].shadow.duration"),
    (with_steps([{"shadow": {"duration": "10 minutes"}}, LAST]), "spec.rollout.steps[0].shadow.duration"),
    (
        with_steps([{"shadow": {"duration": "1m", "percent": 0}}, LAST]),
        "spec.rollout.steps[0].shadow.percent",
    ),
    (
        with_steps([{"shadow": {"duration": "1m", "tolerance": 2}}, LAST]),
        "spec.rollout.steps[0].shadow.tolerance",
    ),
    (
        with_steps([{"shadow": {"duration": "1m", "timeoutMs": 0}}, LAST]),
        "spec.rollout.steps[0].shadow.timeoutMs",
    ),
    (with_steps([{"shadow": {"duration": "1m"}, "setWeight": 5}, LAST]), "each step sets exactly one"),
    (with_steps([LAST], [{"name": "agreement", "max": 0.9}]), "liveF1 and agreement take min"),
    (
        with_steps([LAST], [{"name": "agreement", "min": 0.9, "maxRegression": 0.1}]),
        "agreement takes no maxRegression",
    ),
]


@pytest.mark.parametrize(("manifest", "field"), INVALID, ids=[f for _, f in INVALID])
def test_bad_shadow_specs_are_rejected(crd: Any, kc: Kubectl, manifest: dict[str, Any], field: str) -> None:
    proc = kc.apply(manifest, check=False)
    assert proc.returncode != 0, f"accepted an invalid ModelDeployment (expected an error naming {field})"
    assert field in proc.stderr, proc.stderr


def test_a_shadow_step_gets_its_defaults(crd: Any, kc: Kubectl) -> None:
    md = with_steps([{"shadow": {"duration": "5m"}}, LAST], [{"name": "agreement", "min": 0.95}])
    md["metadata"]["name"] = "shadow-defaults"
    kc.apply(md)
    step = kc.md("shadow-defaults")["spec"]["rollout"]["steps"][0]["shadow"]
    assert step == {"duration": "5m", "percent": 100, "timeoutMs": 1000, "recordInputs": False}


def test_the_shadow_example_is_accepted_by_the_api_server(crd: Any, kc: Kubectl) -> None:
    path = crd.parent.parent / "examples" / "shadow-modeldeployment.yaml"
    proc = kc.run("apply", "--dry-run=server", "-f", str(path))
    assert "created (server dry run)" in proc.stdout

"""Pure parts of the applier: child manifests, status diff, pod relabels (the plugin: test_plugin.py)."""

from __future__ import annotations

from typing import Any

import pytest
from mlrollout.operator.applier import pod_relabels, status_changed
from mlrollout.operator.children import deployment, service
from mlrollout.operator.model import PodObs
from mlrollout.operator.planner import DesiredDeployment
from mlrollout.operator.spec import parse_spec

MD: dict[str, Any] = {
    "metadata": {"name": "churn", "namespace": "ml", "uid": "u-1"},
    "spec": {
        "model": {"name": "churn", "version": "2"},
        "serving": {
            "image": "serve:1",
            "replicas": 4,
            "nodeSelector": {"pool": "gpu"},
            "env": [{"name": "LOG", "value": "debug"}],
            "auth": {"secretRef": {"name": "keys"}},
        },
        "rollout": {"steps": [{"setWeight": 50}, {"pause": {}}]},
    },
    "status": {
        "phase": "Paused",
        "stable": {"version": "2", "modelUri": "file:///a/2", "deployment": "churn-v2", "gateValue": 0.91},
        "history": [
            {"revision": 2, "version": "1", "modelUri": "file:///a/1", "deployment": "churn-v1"},
            {"revision": 1, "version": "0", "modelUri": "file:///a/0", "deployment": "churn-v0"},
        ],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "4 pods ready"}],
    },
}


def test_deployment_manifest_pins_uri_and_owner() -> None:
    spec = parse_spec(MD["spec"])
    want = DesiredDeployment("churn-v2-abc123", "2", "file:///a/2", 3, "canary", "abc123")
    manifest = deployment(MD, spec, want)
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert manifest["metadata"]["labels"]["mlrollout.io/track"] == "canary"
    template = manifest["spec"]["template"]
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector["mlrollout.io/revision"] == "abc123"
    assert "mlrollout.io/track" not in selector  # the role changes; the identity does not
    assert template["metadata"]["labels"]["mlrollout.io/track"] == "canary"
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    container = template["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLROLLOUT_MODEL_URI"] == "file:///a/2"
    assert env["LOG"] == "debug"
    assert template["spec"]["nodeSelector"] == {"pool": "gpu"}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "keys"
    assert "emptyDir" in volumes["tmp"]  # read-only root filesystem, writable /tmp
    assert template["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert manifest["spec"]["replicas"] == 3
    svc = service(MD, spec)
    assert svc["spec"]["selector"] == {
        "app.kubernetes.io/name": "mlrollout-serving",
        "mlrollout.io/model-deployment": "churn",
    }


@pytest.mark.parametrize(
    ("current", "new", "changed"),
    [
        (
            {"phase": "Promoted", "lastAnalysis": {"x": 1}},
            {"phase": "Promoted", "canary": None, "history": []},
            False,
        ),
        ({"phase": "Promoted"}, {"phase": "Progressing"}, True),
        ({"canary": {"version": "2"}}, {"canary": None}, True),
        (None, {"phase": "Pending"}, True),
    ],
)
def test_status_changed(current: dict[str, Any] | None, new: dict[str, Any], changed: bool) -> None:
    assert status_changed(current, new) is changed


def test_pod_relabels_follow_the_deployment_role() -> None:
    wanted = [
        DesiredDeployment("m-v2-aa", "2", "u2", 10, "stable", "aa"),
        DesiredDeployment("m-v1-aa", "1", "u1", 0, "retired", "aa"),
    ]
    pods = [
        PodObs("p1", "2", "aa", "canary"),  # just promoted: relabel
        PodObs("p2", "2", "aa", "stable"),  # already right
        PodObs("p3", "1", "aa", "stable"),  # terminating old stable: retired
        PodObs("p4", "3", "zz", "canary"),  # not ours to judge (deleted revision)
    ]
    assert pod_relabels(wanted, pods) == [("p1", "stable"), ("p3", "retired")]

"""Pure parts of the plugin (patches, tables) and of the applier (child manifests, status diff)."""

from __future__ import annotations

from typing import Any

import pytest
from mlrollout.operator.applier import pod_relabels, status_changed
from mlrollout.operator.children import deployment, service
from mlrollout.operator.model import PodObs
from mlrollout.operator.planner import DesiredDeployment
from mlrollout.operator.plugin import (
    PluginError,
    intent_patch,
    render_history,
    render_status,
    undo_patch,
    undo_target,
)
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


def test_intent_patch_clears_other_actions() -> None:
    body = intent_patch("promote", "full")
    intent = body["spec"]["intent"]
    assert intent["promote"] == "full"
    assert intent["abort"] is None
    assert intent["undo"] is None
    assert len(intent["id"]) == 12
    assert intent_patch("abort", True)["spec"]["intent"]["id"] != intent["id"]


def test_undo_picks_latest_kept_or_named_version() -> None:
    assert undo_target(MD, None, None) == "1"
    assert undo_target(MD, "0", None) == "0"
    assert undo_target(MD, None, 1) == "0"
    with pytest.raises(PluginError, match="version 9 is not kept"):
        undo_target(MD, "9", None)
    with pytest.raises(PluginError, match="no revision 7"):
        undo_target(MD, None, 7)
    body = undo_patch("1")
    assert body["spec"]["model"] == {"version": "1", "alias": None}
    assert body["spec"]["intent"]["undo"] == {"version": "1"}


def test_tables_are_readable() -> None:
    status = render_status(MD)
    assert "Phase:     Paused" in status
    with_analysis = {
        **MD,
        "status": {
            **MD["status"],
            "pauseReason": "AnalysisInconclusive",
            "lastAnalysis": {
                "canaryVersion": "3",
                "verdict": "Inconclusive",
                "action": "Hold",
                "evaluatedAt": "2026-01-01T12:00:30Z",
                "message": "errorRate: canary has 3 requests, below minSamples 100",
            },
        },
    }
    shown = render_status(with_analysis)
    assert "(reason: AnalysisInconclusive)" in shown
    assert "Last analysis: Inconclusive (Hold) of canary 3 at 2026-01-01T12:00:30Z: errorRate" in shown
    assert "stable   2" in status
    assert "Ready       True" in status
    routed = render_status(
        {
            **MD,
            "status": {
                **MD["status"],
                "route": {"kind": "HTTPRoute", "name": "churn", "weight": 5, "ready": True},
                "headerRoute": [{"name": "X-Canary", "value": "always", "type": "Exact"}],
            },
        }
    )
    assert "Router:    HTTPRoute churn: canary weight in the route 5%, served" in routed
    assert "Header route: requests with X-Canary Exact 'always' go to the canary" in routed
    history = render_history(MD)
    assert history.splitlines()[0].split() == [
        "REVISION",
        "VERSION",
        "GATE",
        "STATE",
        "SINCE",
        "MODEL",
        "URI",
    ]
    assert "current" in history
    assert "kept (0 replicas)" in history


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

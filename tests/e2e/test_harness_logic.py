"""The pod runner's pure decisions: which servers a set of Deployments and pods asks for, and
how a weight splits traffic. (The e2e scenarios exercise the I/O around them.)"""

from __future__ import annotations

import random
from typing import Any

import pytest
from harness import LABEL_MD, LABEL_TRACK, LABEL_VERSION, desired_servers, pick_track


def deployment(name: str, version: str, replicas: int, track: str, uri: str) -> dict[str, Any]:
    selector = {LABEL_MD: "md", LABEL_VERSION: version}
    return {
        "metadata": {"name": name, "labels": {**selector}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**selector, LABEL_TRACK: track}},
                "spec": {
                    "containers": [
                        {
                            "name": "serving",
                            "env": [
                                {"name": "MLROLLOUT_MODEL_URI", "value": uri},
                                {"name": "MLROLLOUT_MODEL_VERSION", "value": version},
                                {
                                    "name": "FROM_SECRET",
                                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                                },
                            ],
                        }
                    ]
                },
            },
        },
    }


def pod(version: str, track: str, *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {LABEL_MD: "md", LABEL_VERSION: version, LABEL_TRACK: track}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def test_only_deployments_with_replicas_get_a_server() -> None:
    deps = [
        deployment("md-v1", "1", 2, "stable", "file:///m/1"),
        deployment("md-v2", "2", 0, "canary", "file:///m/2"),
    ]
    wanted = desired_servers(deps, [])
    assert list(wanted) == ["md-v1"]
    server = wanted["md-v1"]
    assert (server.version, server.track, server.model_uri) == ("1", "stable", "file:///m/1")
    assert ("FROM_SECRET", "") not in server.env  # values from references are not invented
    assert dict(server.env)["MLROLLOUT_MODEL_URI"] == "file:///m/1"


def test_track_follows_the_pods_relabelled_on_promotion() -> None:
    deps = [deployment("md-v2", "2", 2, "canary", "file:///m/2")]
    pods = [pod("2", "stable"), pod("2", "stable"), pod("1", "canary"), pod("2", "canary", deleting=True)]
    assert desired_servers(deps, pods)["md-v2"].track == "stable"


def test_track_falls_back_to_the_template_without_pods() -> None:
    deps = [deployment("md-v2", "2", 1, "canary", "file:///m/2")]
    assert desired_servers(deps, [])["md-v2"].track == "canary"


@pytest.mark.parametrize(("weight", "low", "high"), [(0, 0, 0), (100, 1000, 1000), (30, 240, 360)])
def test_weight_splits_requests(weight: int, low: int, high: int) -> None:
    rng = random.Random(7)
    canary = sum(pick_track(weight, rng) == "canary" for _ in range(1000))
    assert low <= canary <= high

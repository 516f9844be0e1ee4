"""The slim diff-base storage builds exactly the essence kopf's own storage builds."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import bodies
from mlrollout.operator.kopf_diffbase import SlimDiffBaseStorage

PREFIX = "mlrollout.io"


def body(**extra_meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "fraud",
            "namespace": "ml",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 3,
            "labels": {"team": "risk"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                f"{PREFIX}/last-handled-configuration": json.dumps({"spec": {"model": {"version": "1"}}}),
                "other-operator.kopf.dev/last-handled-configuration": "{}",
                "note": "kept",
            },
            "managedFields": [{"manager": "kopf", "fieldsV1": {"f:status": {"f:phase": {}}}}] * 5,
            "finalizers": ["mlrollout.io/finalizer"],
            **extra_meta,
        },
        "spec": {"model": {"name": "fraud", "version": "2"}, "serving": {"replicas": 2}},
        "status": {"phase": "Progressing", "weight": 50, "conditions": [{"type": "Ready"}]},
    }


CASES = {
    "full": body(),
    "owned": body(ownerReferences=[{"kind": "Deployment", "name": "x", "uid": "1"}]),
    "no annotations or labels": {"kind": "ModelDeployment", "metadata": {"name": "a"}, "spec": {"x": 1}},
    "no spec": {"kind": "ModelDeployment", "metadata": {"name": "a", "labels": {"a": "b"}}, "status": {}},
    "extra top-level field": {**body(), "data": {"k": [1, 2]}},
}


@pytest.mark.parametrize("extra_fields", [None, ["spec"], ["status.phase"], ["metadata.generation"]])
@pytest.mark.parametrize("case", list(CASES))
def test_the_essence_is_kopfs_own(case: str, extra_fields: list[str] | None) -> None:
    raw = CASES[case]
    before = copy.deepcopy(raw)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    ours = SlimDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    want = kopfs.build(body=bodies.Body(copy.deepcopy(raw)), extra_fields=extra_fields)
    got = ours.build(body=bodies.Body(raw), extra_fields=extra_fields)
    assert got == want
    assert raw == before  # the body is not changed


def test_the_essence_is_a_copy() -> None:
    raw = body()
    essence = SlimDiffBaseStorage(prefix=PREFIX).build(body=bodies.Body(raw))
    essence["spec"]["model"]["version"] = "changed"  # type: ignore[index]
    assert raw["spec"]["model"]["version"] == "2"

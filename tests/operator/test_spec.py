"""Parsing `.spec` into typed values; bad input names its field."""

from __future__ import annotations

from typing import Any

import pytest
from mlrollout.operator.spec import Analysis, InvalidSpec, Pause, SetWeight, parse_duration, parse_spec


def base(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"name": "churn", "version": "7"}, "serving": {"image": "serve:1"}}
    spec.update(over)
    return spec


def test_defaults() -> None:
    spec = parse_spec(base())
    assert spec.model.request == "churn@7"
    assert spec.serving.replicas == 2
    assert spec.gate.metric == "f1_score"
    assert spec.steps == (SetWeight(10), Pause(60), SetWeight(50), Pause(60), SetWeight(100))
    assert spec.progress_deadline_seconds == 600
    assert spec.history_limit == 3
    assert spec.intent is None


def test_steps_and_intent() -> None:
    spec = parse_spec(
        base(
            rollout={
                "steps": [{"setWeight": 20}, {"pause": {}}, {"analysis": {}}, {"pause": {"duration": "2m"}}],
                "analysis": {"metrics": [{"name": "liveF1", "min": 0.8}]},
            },
            intent={"id": "a1", "promote": "full"},
        )
    )
    assert spec.steps == (SetWeight(20), Pause(None), Analysis(), Pause(120))
    assert spec.intent is not None
    assert spec.intent.promote == "full"


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60), ("5m", 300), ("1h", 3600), ("0s", 0)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text, "f") == seconds


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"serving": {"image": "x"}}, "spec.model.name"),
        (base(model={"name": "m"}), "spec.model"),
        (base(model={"name": "m", "version": "1", "alias": "a"}), "spec.model"),
        (base(model={"name": "m", "version": "v1"}), "spec.model.version"),
        (base(serving={}), "spec.serving.image"),
        (base(serving={"image": "x", "replicas": 0}), "spec.serving.replicas"),
        (base(gate={"threshold": 1.5}), "spec.gate.threshold"),
        (base(gate={"threshold": 0.5, "maxRegression": -1}), "spec.gate.maxRegression"),
        (base(rollout={"steps": []}), "spec.rollout.steps"),
        (base(rollout={"steps": [{"setWeight": 101}]}), "spec.rollout.steps[0].setWeight"),
        (base(rollout={"steps": [{"setWeight": 10, "pause": {}}]}), "spec.rollout.steps[0]"),
        (base(rollout={"steps": [{"pause": {"duration": "soon"}}]}), "spec.rollout.steps[0].pause.duration"),
        (base(rollout={"steps": [{"pause": {}}]}), "spec.rollout.steps"),
        (base(rollout={"trafficRouter": {"nginx": {}}}), "spec.rollout.trafficRouter"),
        (base(rollout={"progressDeadlineSeconds": 1}), "spec.rollout.progressDeadlineSeconds"),
        (
            base(serving={"image": "x", "env": [{"name": "MLROLLOUT_MODEL_URI", "value": "y"}]}),
            "spec.serving.env[0]",
        ),
        (base(intent={"promote": "step"}), "spec.intent.id"),
        (base(intent={"id": "1", "promote": "step", "abort": True}), "spec.intent"),
        (base(paused="yes"), "spec.paused"),
        (base(rollout={"steps": [{"setWeight": 5}, {"analysis": {}}]}), "spec.rollout.analysis"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_spec(spec)
    assert str(err.value).startswith(field)


def test_an_applied_undo_intent_does_not_block_a_new_target() -> None:
    """After `undo` pinned the version, a new target leaves the old (applied) intent behind; the CRD
    refuses a mismatch only when the intent itself is written."""
    spec = parse_spec(base(intent={"id": "1", "undo": {"version": "3"}}))
    assert spec.intent is not None
    assert spec.intent.undo_version == "3"

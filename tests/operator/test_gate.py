"""The offline gate in both directions: a score with a floor (F1) and an error with a ceiling (RMSE),
each with its stable-relative bound (pure)."""

from __future__ import annotations

import pytest
from mlrollout.operator.model import Resolution
from mlrollout.operator.planner.gate import judge_gate
from mlrollout.operator.spec import Gate, InvalidSpec, parse_spec


def version(value: float | None) -> Resolution:
    return Resolution(version="7", model_uri="models:/m/7", run_id="r7", gate_value=value)


F1 = Gate(metric="f1_score", threshold=0.8, max_regression=0.02)
RMSE = Gate(metric="rmse", threshold=30.0, max_regression=2.0, direction="lowerIsBetter")


@pytest.mark.parametrize(
    ("gate", "value", "baseline", "passed", "why"),
    [
        (F1, 0.9, None, True, "f1_score 0.9000 >= threshold 0.8000 (version 7)"),
        (F1, 0.7, None, False, "f1_score 0.7000 < threshold 0.8000 (version 7)"),
        (F1, 0.85, 0.9, False, "f1_score 0.8500 regresses more than 0.0200 below stable 0.9000 (version 7)"),
        (F1, 0.89, 0.9, True, "f1_score 0.8900 >= threshold 0.8000 and stable 0.9000 - 0.0200 (version 7)"),
        (RMSE, 12.5, None, True, "rmse 12.5000 <= threshold 30.0000 (version 7)"),
        (RMSE, 31.0, None, False, "rmse 31.0000 > threshold 30.0000 (version 7)"),
        (RMSE, 15.0, 12.0, False, "rmse 15.0000 rises more than 2.0000 above stable 12.0000 (version 7)"),
        (RMSE, 13.0, 12.0, True, "rmse 13.0000 <= threshold 30.0000 and stable 12.0000 + 2.0000 (version 7)"),
        (RMSE, None, 12.0, False, "metric rmse is missing on run r7 of version 7"),
    ],
)
def test_judge_gate(gate: Gate, value: float | None, baseline: float | None, passed: bool, why: str) -> None:
    assert judge_gate(gate, version(value), baseline) == (passed, why)


def spec(gate: dict[str, object]) -> dict[str, object]:
    return {"model": {"name": "m", "version": "1"}, "serving": {"image": "x"}, "gate": gate}


def test_a_lower_is_better_gate_parses_thresholds_in_the_metrics_unit() -> None:
    parsed = parse_spec(
        spec({"metric": "rmse", "direction": "lowerIsBetter", "threshold": 2500, "maxRegression": 40})
    )
    assert parsed.gate == Gate("rmse", 2500.0, 40.0, "lowerIsBetter")
    assert parse_spec(spec({})).gate == Gate()  # f1_score, floor 0, higher is better


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"direction": "sideways"}, "spec.gate.direction: expected one of higherIsBetter, lowerIsBetter"),
        ({"metric": "rmse", "direction": "lowerIsBetter"}, "spec.gate.threshold: a lowerIsBetter gate needs"),
        (
            {"metric": "rmse", "direction": "lowerIsBetter", "threshold": -1},
            "spec.gate.threshold: expected a finite",
        ),
        ({"threshold": 2500}, "spec.gate.threshold: expected a number in [0, 1]"),
    ],
)
def test_bad_gates_name_the_field(gate: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_spec(spec(gate))
    assert str(err.value).startswith(message)

"""PSI and live macro F1 against independent references (hand arithmetic, scikit-learn)."""

from __future__ import annotations

import math

import pytest
from mlrollout.operator.analysis import macro_f1, psi
from mlrollout.operator.analysis.signals import PSI_EPSILON
from sklearn.metrics import f1_score


def test_psi_identical_distributions_is_zero() -> None:
    assert psi({"0": 300, "1": 700}, {"0": 30, "1": 70}) == pytest.approx(0.0, abs=1e-12)


def test_psi_matches_hand_computation() -> None:
    # 50/50 vs 20/80 with no zero cells: smoothing barely matters.
    p, q = [0.5, 0.5], [0.2, 0.8]
    expected = sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert psi({"a": 50, "b": 50}, {"a": 20, "b": 80}) == pytest.approx(expected, rel=1e-3)


def test_psi_is_symmetric_and_grows_with_shift() -> None:
    small = psi({"0": 55, "1": 45}, {"0": 50, "1": 50})
    large = psi({"0": 90, "1": 10}, {"0": 50, "1": 50})
    assert 0 < small < 0.1 < 0.2 < large
    mirrored = psi({"0": 50, "1": 50}, {"0": 90, "1": 10})
    assert psi({"0": 90, "1": 10}, {"0": 50, "1": 50}) == pytest.approx(mirrored)


def test_psi_missing_class_is_finite_and_large() -> None:
    value = psi({"0": 90, "1": 10}, {"0": 100})
    norm = 1 + 2 * PSI_EPSILON
    p1, q1 = (0.1 + PSI_EPSILON) / norm, PSI_EPSILON / norm
    p0, q0 = (0.9 + PSI_EPSILON) / norm, (1 + PSI_EPSILON) / norm
    assert value == pytest.approx((p1 - q1) * math.log(p1 / q1) + (p0 - q0) * math.log(p0 / q0))
    assert 0.5 < value < math.inf


@pytest.mark.parametrize(
    ("canary", "stable", "message"),
    [
        ({}, {"0": 1}, "both tracks"),
        ({"0": 0}, {"0": 1}, "both tracks"),
        ({"0": -1}, {"0": 1}, "canary count"),
    ],
)
def test_psi_rejects_bad_counts(canary: dict[str, float], stable: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        psi(canary, stable)


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        ([0, 1, 1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 1, 1, 1, 0]),
        ([0, 1, 2, 2, 1, 0, 2, 2], [0, 2, 2, 2, 1, 1, 0, 2]),
        ([1, 1, 1, 1], [0, 0, 0, 0]),  # never right: 0
        ([0, 0, 1, 1], [0, 0, 1, 1]),  # always right: 1
        ([0, 0, 0, 1], [0, 0, 0, 2]),  # a class only ever predicted counts too
    ],
)
def test_macro_f1_matches_scikit_learn(y_true: list[int], y_pred: list[int]) -> None:
    confusion: dict[tuple[str, str], float] = {}
    for actual, predicted in zip(y_true, y_pred, strict=True):
        key = (str(predicted), str(actual))
        confusion[key] = confusion.get(key, 0) + 1
    expected = f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert macro_f1(confusion) == pytest.approx(expected)


def test_macro_f1_with_fractional_counts_from_increase() -> None:
    assert macro_f1({("1", "1"): 9.6, ("0", "0"): 9.6}) == pytest.approx(1.0)


def test_macro_f1_needs_labels() -> None:
    with pytest.raises(ValueError, match="at least one feedback label"):
        macro_f1({("0", "0"): 0})
    with pytest.raises(ValueError, match="finite"):
        macro_f1({("0", "0"): math.nan})

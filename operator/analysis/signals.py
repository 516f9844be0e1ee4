"""The arithmetic behind the metrics: live macro F1 from feedback counts, and PSI drift.

Both take plain counts (as summed from Prometheus counters over the window) so they are easy to test
and independent of where the counts came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Additive smoothing for PSI. A class one track never predicted would give ln(p/0) = inf; adding
# epsilon to every proportion (then renormalising) keeps PSI finite while a class present at 10% on
# one side and absent on the other still scores ~0.69, far above the usual 0.2 "major shift" line.
PSI_EPSILON = 1e-4


def psi(canary: Mapping[str, float], stable: Mapping[str, float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index between two predicted-class count distributions.

    PSI = sum over classes c of (p_c - q_c) * ln(p_c / q_c), p = canary share, q = stable share,
    each share smoothed as (count/total + epsilon) / (1 + K * epsilon) over the K classes seen on
    either side. 0 means identical distributions; > 0.2 is conventionally a major shift.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    _check_counts(canary, "canary")
    _check_counts(stable, "stable")
    canary_total, stable_total = sum(canary.values()), sum(stable.values())
    if canary_total <= 0 or stable_total <= 0:
        raise ValueError(
            f"PSI needs predictions on both tracks (canary {canary_total}, stable {stable_total})"
        )
    classes = set(canary) | set(stable)
    norm = 1 + len(classes) * epsilon
    total = 0.0
    for cls in classes:
        p = (canary.get(cls, 0.0) / canary_total + epsilon) / norm
        q = (stable.get(cls, 0.0) / stable_total + epsilon) / norm
        total += (p - q) * math.log(p / q)
    return total


def macro_f1(confusion: Mapping[tuple[str, str], float]) -> float:
    """Macro-averaged F1 from (predicted, actual) -> count.

    Averages over every class that appears as a prediction or a label, like scikit-learn's
    f1_score(average="macro") on the same pairs, so a model that never predicts a class scores 0 on it.
    """
    _check_counts(confusion, "feedback")
    tp: dict[str, float] = {}
    fp: dict[str, float] = {}
    fn: dict[str, float] = {}
    for (predicted, actual), count in confusion.items():
        if count <= 0:
            continue
        if predicted == actual:
            tp[actual] = tp.get(actual, 0.0) + count
        else:
            fp[predicted] = fp.get(predicted, 0.0) + count
            fn[actual] = fn.get(actual, 0.0) + count
    classes = set(tp) | set(fp) | set(fn)
    if not classes:
        raise ValueError("F1 needs at least one feedback label")
    scores = [2 * tp.get(c, 0.0) / (2 * tp.get(c, 0.0) + fp.get(c, 0.0) + fn.get(c, 0.0)) for c in classes]
    return sum(scores) / len(scores)


def _check_counts(counts: Mapping[Any, float], name: str) -> None:
    for key, count in counts.items():
        if not math.isfinite(count) or count < 0:
            raise ValueError(f"{name} count for {key!r} must be a finite number >= 0, got {count}")

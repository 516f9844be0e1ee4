"""Exact numpy re-statements of common scikit-learn predict paths, used only after they are proven equal.

For small requests scikit-learn's per-call input validation costs far more than the arithmetic (about
0.4 ms for a 1-row StandardScaler + LogisticRegression pipeline, against microseconds of math). The
server already validates input against the signature, so for a few well-known estimators it replays
the same operations, in the same order, on the fitted attributes. A compiled path is used only if it
reproduces `estimator.predict` exactly on probe data at load time; anything else keeps the native
predict. Disable with MLROLLOUT_FASTPATH=false."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]
Step = Callable[[Matrix], Matrix]
Predict = Callable[[Matrix], npt.NDArray[Any]]


def compile_predict(estimator: Any) -> Predict | None:
    """A numpy predict equivalent to `estimator.predict`, or None when the estimator is not covered."""
    steps: list[Any] = (
        [s for _, s in estimator.steps] if type(estimator).__name__ == "Pipeline" else [estimator]
    )
    if any(s is None or s == "passthrough" for s in steps):
        return None
    transforms: list[Step] = []
    for step in steps[:-1]:
        transform = _transform(step)
        if transform is None:
            return None
        transforms.append(transform)
    final = _final(steps[-1])
    if final is None:
        return None

    def predict(x: Matrix) -> npt.NDArray[Any]:
        for transform in transforms:
            x = transform(x)
        return final(x)

    return predict


def _transform(step: Any) -> Step | None:
    if type(step).__name__ != "StandardScaler" or type(step).__module__.split(".")[0] != "sklearn":
        return None
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None

    def transform(x: Matrix) -> Matrix:
        out = np.array(x, dtype=np.float64, copy=True)
        if mean is not None:
            out -= mean
        if scale is not None:
            out /= scale
        return out

    return transform


LINEAR_CLASSIFIERS = frozenset({"LogisticRegression", "LinearSVC", "RidgeClassifier", "SGDClassifier"})


def _final(step: Any) -> Predict | None:
    name = type(step).__name__
    if type(step).__module__.split(".")[0] != "sklearn":
        return None
    if name in LINEAR_CLASSIFIERS and hasattr(step, "coef_") and hasattr(step, "classes_"):
        coef_t = step.coef_.T if step.coef_.ndim == 2 else step.coef_
        intercept = step.intercept_
        classes = step.classes_

        def linear(x: Matrix) -> npt.NDArray[Any]:
            scores = x @ coef_t + intercept
            if scores.ndim > 1 and scores.shape[1] == 1:
                scores = scores.reshape(-1)
            indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
            return classes.take(indices, axis=0)  # type: ignore[no-any-return]

        return linear
    if name == "DecisionTreeClassifier" and getattr(step, "n_outputs_", 1) == 1:
        tree = step.tree_
        classes = step.classes_

        def decision_tree(x: Matrix) -> npt.NDArray[Any]:
            proba = tree.predict(np.ascontiguousarray(x, dtype=np.float32))
            return classes.take(np.argmax(proba, axis=1), axis=0)  # type: ignore[no-any-return]

        return decision_tree
    return None


def probe_matrix(estimator: Any, width: int, rows: int = 512, seed: int = 0) -> Matrix:
    """Inputs spread over the range the model was fitted on (from a leading scaler, when there is one)."""
    rng = np.random.default_rng(seed)
    first = estimator.steps[0][1] if type(estimator).__name__ == "Pipeline" else estimator
    centre = getattr(first, "mean_", None)
    spread = getattr(first, "scale_", None)
    centre = np.zeros(width) if centre is None else np.asarray(centre, dtype=np.float64)
    spread = np.ones(width) if spread is None else np.asarray(spread, dtype=np.float64)
    base = rng.standard_normal((rows, width)) * spread * 2 + centre
    return np.vstack([base, base[:1] * 0, np.full((1, width), 1e6), np.full((1, width), -1e6)])


def verified_fastpath(estimator: Any, width: int, samples: Matrix | None = None) -> Predict | None:
    """The compiled predict if it matches scikit-learn exactly on probe rows (and given samples)."""
    compiled = compile_predict(estimator)
    if compiled is None:
        return None
    probe = probe_matrix(estimator, width)
    if samples is not None and samples.size:
        probe = np.vstack([probe, samples])
    try:
        expected = np.asarray(estimator.predict(probe))
        got = compiled(probe)
        single = np.concatenate([compiled(probe[i : i + 1]) for i in range(8)])
    except Exception:
        return None
    same = (
        expected.dtype == got.dtype and np.array_equal(expected, got) and np.array_equal(expected[:8], single)
    )
    return compiled if same else None

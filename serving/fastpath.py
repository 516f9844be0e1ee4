"""Exact numpy re-statements of common scikit-learn predict paths, used only after they are proven equal.

For small requests scikit-learn's per-call input validation costs far more than the arithmetic (about
0.4 ms for a 1-row StandardScaler + LogisticRegression pipeline, against microseconds of math). The
server already validates input against the signature, so for a few well-known estimators it replays
the same operations, in the same order, on the fitted attributes. A compiled path is used only if it
reproduces `estimator.predict` exactly on probe data at load time; anything else keeps the native
predict. Disable with MLROLLOUT_FASTPATH=false.

Models with string columns get the same treatment for a ColumnTransformer pipeline (see the end of
this module): the re-statement reads the parsed object table, never a DataFrame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from mlrollout.serving.schema import InputSchema

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


# --------------------------------------------------------------------------- DataFrame pipelines
# Pipeline(ColumnTransformer(OneHotEncoder on string columns, StandardScaler / passthrough on numeric
# ones), final estimator): the ColumnTransformer's per-call pandas work costs milliseconds, against
# microseconds of lookups and arithmetic. The re-statement reads the parsed table (an object array
# for string columns) directly; it is used only if it reproduces `estimator.predict` on a DataFrame
# exactly, on probe rows made of every fitted category and spread numbers, and on single rows.
LINEAR_REGRESSORS = frozenset({"LinearRegression", "Ridge", "Lasso", "ElasticNet"})
Block = Callable[[npt.NDArray[Any]], Matrix]


def resolve_columns(columns: Any, schema: InputSchema) -> list[int] | None:
    """A ColumnTransformer branch's columns as schema positions, when given by name or index."""
    if isinstance(columns, str):
        columns = [columns]
    try:
        items = list(columns)
    except TypeError:  # a callable selector or a slice: the branch's columns are not known statically
        return None
    positions: list[int] = []
    for item in items:
        if isinstance(item, str) and item in schema.positions:
            positions.append(schema.positions[item])
        elif isinstance(item, int | np.integer) and not isinstance(item, bool) and 0 <= item < schema.width:
            positions.append(int(item))
        else:
            return None
    return positions


def _sklearn_named(step: Any, *names: str) -> bool:
    return type(step).__name__ in names and type(step).__module__.split(".")[0] == "sklearn"


def _one_hot(encoder: Any, positions: list[int]) -> Block | None:
    if (
        getattr(encoder, "drop_idx_", None) is not None
        or getattr(encoder, "_infrequent_enabled", False)
        or encoder.handle_unknown not in {"error", "ignore"}
        or np.dtype(encoder.dtype) != np.float64
        or len(encoder.categories_) != len(positions)
    ):
        return None
    lookups = [{v: i for i, v in enumerate(c.tolist())} for c in encoder.categories_]
    widths = [len(c) for c in encoder.categories_]
    offsets = np.cumsum([0, *widths[:-1]]).tolist()
    total = sum(widths)
    strict = encoder.handle_unknown == "error"

    def block(x: npt.NDArray[Any]) -> Matrix:
        out = np.zeros((x.shape[0], total))
        for lookup, offset, position in zip(lookups, offsets, positions, strict=True):
            for r, value in enumerate(x[:, position].tolist()):
                index = lookup.get(value)
                if index is not None:
                    out[r, offset + index] = 1.0
                elif strict:
                    raise ValueError(f"unknown category {value!r} in column {position}")
        return out

    return block


def _scaled(scaler: Any, positions: list[int]) -> Block:
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def block(x: npt.NDArray[Any]) -> Matrix:
        out = np.array(x[:, positions], dtype=np.float64)
        if mean is not None:
            out -= mean
        if scale is not None:
            out /= scale
        return out

    return block


def _passthrough(positions: list[int]) -> Block:
    def block(x: npt.NDArray[Any]) -> Matrix:
        return np.array(x[:, positions], dtype=np.float64)

    return block


def _column_blocks(transformer: Any, schema: InputSchema) -> list[Block] | None:
    if getattr(transformer, "sparse_output_", False):
        return None  # a sparse matrix reaches the final estimator: its arithmetic is not re-stated here
    blocks: list[Block] = []
    for _, step, columns in transformer.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        positions = resolve_columns(columns, schema)
        if positions is None:
            return None
        if not positions:
            continue
        strings = [p for p in positions if schema.columns[p].is_string]
        identity = _sklearn_named(step, "FunctionTransformer") and step.func is None  # fitted passthrough
        if (identity or (isinstance(step, str) and step == "passthrough")) and not strings:
            blocks.append(_passthrough(positions))
        elif _sklearn_named(step, "StandardScaler") and not strings:
            blocks.append(_scaled(step, positions))
        elif _sklearn_named(step, "OneHotEncoder"):
            block = _one_hot(step, positions)
            if block is None:
                return None
            blocks.append(block)
        else:
            return None
    return blocks or None


def _final_any(step: Any) -> Predict | None:
    classifier = _final(step)
    if classifier is not None:
        return classifier
    if _sklearn_named(step, *LINEAR_REGRESSORS) and np.ndim(step.coef_) == 1:
        coef = np.asarray(step.coef_, dtype=np.float64)
        intercept = step.intercept_

        def linear(x: Matrix) -> npt.NDArray[Any]:
            return x @ coef + intercept  # type: ignore[no-any-return]

        return linear
    return None


def compile_frame_predict(estimator: Any, schema: InputSchema) -> Predict | None:
    """A predict over the parsed table equal to `estimator.predict(DataFrame)`, or None when the
    pipeline is not Pipeline([ColumnTransformer(covered branches), covered final estimator])."""
    if not _sklearn_named(estimator, "Pipeline") or len(estimator.steps) != 2:
        return None
    transformer, final_step = estimator.steps[0][1], estimator.steps[1][1]
    if not _sklearn_named(transformer, "ColumnTransformer"):
        return None
    blocks = _column_blocks(transformer, schema)
    final = _final_any(final_step)
    if blocks is None or final is None:
        return None

    def predict(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return final(np.hstack([block(x) for block in blocks]))

    return predict


def frame_probe(estimator: Any, schema: InputSchema, rows: int = 256, seed: int = 0) -> npt.NDArray[Any]:
    """Rows over every fitted category of each encoded column and spread numbers elsewhere."""
    rng = np.random.default_rng(seed)
    probe = np.empty((rows, schema.width), dtype=object)
    for i, column in enumerate(schema.columns):
        probe[:, i] = rng.standard_normal(rows) * 50 if not column.is_string else "x"
    transformer = estimator.steps[0][1]
    for _, step, columns in transformer.transformers_:
        positions = resolve_columns(columns, schema) or []
        if _sklearn_named(step, "OneHotEncoder"):
            for position, categories in zip(positions, step.categories_, strict=False):
                values = categories.tolist()
                probe[:, position] = [values[k % len(values)] for k in rng.permutation(rows)]
        elif _sklearn_named(step, "StandardScaler"):
            for j, position in enumerate(positions):
                probe[:, position] = rng.standard_normal(rows) * 2 * step.scale_[j] + step.mean_[j]
    return probe


def verified_frame_fastpath(
    estimator: Any, schema: InputSchema, to_frame: Callable[[npt.NDArray[Any], InputSchema], Any]
) -> Predict | None:
    """The compiled table predict if it matches `estimator.predict(to_frame(rows))` exactly."""
    compiled = compile_frame_predict(estimator, schema)
    if compiled is None:
        return None
    try:
        probe = frame_probe(estimator, schema)
        expected = np.asarray(estimator.predict(to_frame(probe, schema)))
        got = compiled(probe)
        # Row by row as well: BLAS may round a 1-row product differently from the same row in a
        # batch, in scikit-learn as here, so each single row is compared with scikit-learn's single row.
        lone = [np.asarray(estimator.predict(to_frame(probe[i : i + 1], schema))) for i in range(8)]
        single = [compiled(probe[i : i + 1]) for i in range(8)]
    except Exception:
        return None
    same = (
        expected.dtype == got.dtype
        and np.array_equal(expected, got)
        and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(lone, single, strict=True))
    )
    return compiled if same else None

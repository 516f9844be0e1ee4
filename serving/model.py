"""A loaded model as the server sees it: identity, input schema, and a predict over a parsed table.

A numeric signature's table is a float64 matrix, handed to the estimator as numpy (no pandas). A model
that needs column names (string columns, a ColumnTransformer) gets a DataFrame built by `to_frame` with
the dtypes MLflow's own schema enforcement gives each signature type, so it sees what `mlflow models
serve` would pass it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from mlrollout.serving.profile import Profile
from mlrollout.serving.schema import InputSchema

Matrix = npt.NDArray[np.float64]
Table = npt.NDArray[Any]
Task = Literal["classifier", "regressor", "unknown"]
# MLflow's schema enforcement: the dtype each signature column type reaches the model with.
FRAME_DTYPES: dict[str, str] = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
}

# Estimators fitted on DataFrames warn on every numpy call; the server already enforces the column
# order from the signature, so the warning carries no information here and costs time per request.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


class Predictor(Protocol):
    def predict(self, x: Table) -> npt.NDArray[Any]: ...


def to_frame(x: Table, schema: InputSchema) -> Any:
    """A pandas DataFrame in signature order with MLflow's dtypes: strings as object (None where
    missing), numbers as their signature type (float64 where an integer or boolean column has a
    missing value, as pandas itself would hold it)."""
    import pandas as pd

    data: dict[str, Any] = {}
    for i, column in enumerate(schema.columns):
        cells = x[:, i]
        if column.is_string:
            data[column.name] = pd.Series(cells, dtype=object)
            continue
        numbers = cells.astype(np.float64)
        dtype = FRAME_DTYPES.get(column.type, "float64")
        if dtype != "float64" and not np.isnan(numbers).any():
            data[column.name] = numbers.astype(dtype)
        else:
            data[column.name] = numbers
    return pd.DataFrame(data, columns=list(schema.names))


@dataclass(frozen=True)
class NativePredictor:
    """The estimator's own predict on a numpy matrix (no pandas, no pyfunc wrapper), or its verified
    numpy re-statement (see fastpath.py) when one exists; on a DataFrame (`frame_schema`) for
    estimators that select columns by name or read strings."""

    estimator: Any
    compiled: Callable[[Matrix], npt.NDArray[Any]] | None = None
    frame_schema: InputSchema | None = None

    def predict(self, x: Table) -> npt.NDArray[Any]:
        if self.compiled is not None:
            return self.compiled(x)
        if self.frame_schema is not None:
            return np.asarray(self.estimator.predict(to_frame(x, self.frame_schema)))
        return np.asarray(self.estimator.predict(x))


@dataclass(frozen=True)
class PyfuncPredictor:
    """Fallback for flavors without a native path: builds the DataFrame pyfunc expects."""

    pyfunc_model: Any
    schema: InputSchema

    def predict(self, x: Table) -> npt.NDArray[Any]:
        result = self.pyfunc_model.predict(to_frame(x, self.schema))
        values = np.asarray(result.to_numpy() if hasattr(result, "to_numpy") else result)
        # A one-column frame of predictions is still one prediction per row.
        return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    schema: InputSchema
    predictor: Predictor
    flavor: str  # "sklearn" (native) or "pyfunc"
    source: str
    classes: tuple[Any, ...] | None = None  # known class labels, if a classifier
    load_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # "classifier" with classes; "regressor" (numeric predictions: histogram metrics, error feedback);
    # "unknown" (a pyfunc): metrics decided by the predictions' dtype.
    task: Task = "unknown"
    # Schema position -> the categories an encoder with handle_unknown='error' was fitted on.
    categories: Mapping[int, frozenset[Any]] = field(default_factory=dict)
    # The training profile logged in the MLmodel metadata (serving/profile.py), for input drift.
    profile: Profile | None = None

    def predict(self, x: Table) -> npt.NDArray[Any]:
        return self.predictor.predict(x)

"""A loaded model as the server sees it: identity, input schema, and a predict over a float64 matrix."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from mlrollout.serving.schema import InputSchema

Matrix = npt.NDArray[np.float64]

# Estimators fitted on DataFrames warn on every numpy call; the server already enforces the column
# order from the signature, so the warning carries no information here and costs time per request.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


class Predictor(Protocol):
    def predict(self, x: Matrix) -> npt.NDArray[Any]: ...


@dataclass(frozen=True)
class NativePredictor:
    """The estimator's own predict on a numpy matrix (no pandas, no pyfunc wrapper), or its verified
    numpy re-statement (see fastpath.py) when one exists."""

    estimator: Any
    compiled: Callable[[Matrix], npt.NDArray[Any]] | None = None

    def predict(self, x: Matrix) -> npt.NDArray[Any]:
        if self.compiled is not None:
            return self.compiled(x)
        return np.asarray(self.estimator.predict(x))


@dataclass(frozen=True)
class PyfuncPredictor:
    """Fallback for flavors without a native path: builds the DataFrame pyfunc expects."""

    pyfunc_model: Any
    columns: tuple[str, ...]

    def predict(self, x: Matrix) -> npt.NDArray[Any]:
        import pandas as pd

        result = self.pyfunc_model.predict(pd.DataFrame(x, columns=list(self.columns)))
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

    def predict(self, x: Matrix) -> npt.NDArray[Any]:
        return self.predictor.predict(x)

"""Models saved as MLflow saves them (skops, with a signature) in local directories, and input files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from batch_files import NUMERIC_COLUMNS, write_numeric_csv


@pytest.fixture(scope="session")
def numeric_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """StandardScaler + LogisticRegression on eight float columns (serving's verified fast path)."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(2000, len(NUMERIC_COLUMNS))), columns=NUMERIC_COLUMNS)
    y = (x["f0"] + 0.5 * x["f1"] - x["f2"] > 0).astype("int64")
    estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    path = tmp_path_factory.mktemp("models") / "numeric"
    mlflow.sklearn.save_model(
        estimator, str(path), signature=infer_signature(x.head(), estimator.predict(x.head()))
    )
    return path


@pytest.fixture(scope="session")
def categorical_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from support.mlflow_models import save_categorical_model

    path = tmp_path_factory.mktemp("models") / "categorical"
    frame = save_categorical_model(str(path))
    return path, frame


@pytest.fixture(scope="session")
def numeric_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "rows.csv"
    write_numeric_csv(path, rows=20_000, seed=1)
    return path


@pytest.fixture(scope="session")
def pyfunc_oracle() -> Any:
    """MLflow's own loader: what every prediction must equal."""
    import os

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model

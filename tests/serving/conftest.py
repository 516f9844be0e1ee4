"""Fixtures for serving tests: a model registered in the real MLflow server, and the real server
(`mlrollout-serve`, gunicorn, several workers) serving it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serving_harness import RunningServer, start_server
from support.mlflow_models import ModelVersionInfo, register_categorical_model, train_and_register


@pytest.fixture(scope="session")
def registered_model(mlflow_server: Any) -> ModelVersionInfo:
    return train_and_register(mlflow_server.tracking_uri, "serving-breast-cancer", dataset="breast_cancer")


@pytest.fixture(scope="session")
def expected_predictions(registered_model: ModelVersionInfo) -> Any:
    """MLflow's own loader is the oracle for what the server must answer."""
    import pandas as pd

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"  # for mlflow's own loader, in this process
    import mlflow.pyfunc

    oracle = mlflow.pyfunc.load_model(registered_model.model_uri)
    frame = pd.DataFrame(registered_model.sample_rows)[registered_model.feature_names]
    return [int(v) for v in oracle.predict(frame)]


@pytest.fixture(scope="session")
def server(
    registered_model: ModelVersionInfo, component_logs: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(
        "mlrollout-serve",
        registered_model.model_uri,
        component_logs,
        tmp_path_factory.mktemp("serve"),
        model_info=registered_model,
    )
    try:
        yield running
    finally:
        code = running.process.stop()
        assert code == 0, f"server did not shut down cleanly (exit {code})"


@pytest.fixture(scope="session")
def categorical_model(mlflow_server: Any) -> ModelVersionInfo:
    """A ColumnTransformer(OneHotEncoder + StandardScaler) + LogisticRegression churn classifier."""
    return register_categorical_model(mlflow_server.tracking_uri, "serving-churn-categorical")


@pytest.fixture(scope="session")
def categorical_server(
    categorical_model: ModelVersionInfo, component_logs: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    yield from _serve("mlrollout-serve-categorical", categorical_model, component_logs, tmp_path_factory)


@pytest.fixture(scope="session")
def regressor_model(mlflow_server: Any) -> ModelVersionInfo:
    """The same pipeline with a Ridge regressor (a prediction per row: distinct values by the thousand)."""
    return register_categorical_model(mlflow_server.tracking_uri, "serving-churn-value", kind="ridge")


@pytest.fixture(scope="session")
def regressor_server(
    regressor_model: ModelVersionInfo, component_logs: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    yield from _serve("mlrollout-serve-regressor", regressor_model, component_logs, tmp_path_factory)


def _serve(
    name: str, model: ModelVersionInfo, component_logs: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(
        name, model.model_uri, component_logs, tmp_path_factory.mktemp("serve"), model_info=model
    )
    try:
        yield running
    finally:
        code = running.process.stop()
        assert code == 0, f"server did not shut down cleanly (exit {code})"

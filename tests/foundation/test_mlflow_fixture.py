"""A real MLflow server: registered versions carry F1 on their source run, readable by MlflowClient."""

from __future__ import annotations

import pytest
from support.mlflow_models import train_and_register

pytestmark = pytest.mark.mlflow


def test_registered_version_f1_is_read_back(mlflow_server: object) -> None:
    from mlflow import MlflowClient

    uri = mlflow_server.tracking_uri  # type: ignore[attr-defined]
    good = train_and_register(uri, "foundation-churn", dataset="breast_cancer", alias="champion")
    poor = train_and_register(uri, "foundation-churn", dataset="breast_cancer", quality="poor")

    client = MlflowClient(tracking_uri=uri)
    version = client.get_model_version("foundation-churn", good.version)
    run = client.get_run(version.run_id)
    assert run.data.metrics["f1_score"] == pytest.approx(good.f1)
    assert good.f1 > 0.9
    assert client.get_run(poor.run_id).data.metrics["f1_score"] < 0.75
    assert client.get_model_version_by_alias("foundation-churn", "champion").version == good.version
    assert int(poor.version) == int(good.version) + 1
    import mlflow.models

    signature = mlflow.models.get_model_info(good.model_uri).signature
    assert signature is not None
    assert signature.inputs.input_names() == good.feature_names
    assert good.source.startswith(("file://", "/")), good.source
    assert len(good.feature_names) == 30
    assert set(good.classes) == {0, 1}


def test_tree_models_load_with_only_their_declared_trusted_types(mlflow_server: object) -> None:
    import mlflow.sklearn
    import numpy as np

    uri = mlflow_server.tracking_uri  # type: ignore[attr-defined]
    tree = train_and_register(uri, "foundation-tree", dataset="iris", kind="tree")
    model = mlflow.sklearn.load_model(tree.model_uri)
    rows = np.array([[row[name] for name in tree.feature_names] for row in tree.sample_rows])
    assert set(model.predict(rows)) <= set(tree.classes)
    assert tree.f1 > 0.8

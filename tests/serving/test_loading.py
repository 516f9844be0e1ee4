"""Loading models saved by MLflow 3.x: skops with a server-side allow-list, verified trees, no pickle."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mlrollout.serving.loading import (
    ModelLoadError,
    check_tree,
    load_model,
    name_and_version,
    trusted_skops_types,
)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = ["sl", "sw", "pl", "pw"]
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for kind, estimator, options in [
        ("logreg", LogisticRegression(max_iter=300), {}),
        ("tree", DecisionTreeClassifier(max_depth=3), {"skops_trusted_types": ["sklearn.tree._tree.Tree"]}),
        ("pickle", LogisticRegression(max_iter=300), {"serialization_format": "cloudpickle"}),
    ]:
        estimator.fit(x, y)
        paths[kind] = root / kind
        mlflow.sklearn.save_model(
            estimator,
            str(paths[kind]),
            signature=infer_signature(x.head(), estimator.predict(x.head())),
            **options,
        )
    return paths


def test_skops_logreg_loads_natively_with_schema_and_classes(saved_models: dict[str, Path]) -> None:
    model = load_model(str(saved_models["logreg"]), name="iris", version="4")
    assert (model.name, model.version, model.flavor) == ("iris", "4", "sklearn")
    assert model.schema.names == ("sl", "sw", "pl", "pw")
    assert model.classes == (0, 1, 2)
    assert model.predict(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])).tolist() == [0, 2]


def test_tree_type_is_trusted_only_after_checking_its_nodes(saved_models: dict[str, Path]) -> None:
    model = load_model(saved_models["tree"].as_uri())
    assert model.predict(np.array([[5.1, 3.5, 1.4, 0.2]])).tolist() == [0]


def test_pickle_artifacts_are_refused_by_default(saved_models: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="MLROLLOUT_ALLOW_PICKLE=true"):
        load_model(str(saved_models["pickle"]))


def test_pickle_artifacts_load_through_pyfunc_when_allowed(saved_models: dict[str, Path]) -> None:
    model = load_model(str(saved_models["pickle"]), allow_pickle=True)
    assert model.flavor == "pyfunc"
    assert model.predict(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])).tolist() == [0, 2]


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no MLmodel file"):
        load_model(str(tmp_path))


def test_allow_list_is_decided_by_the_server() -> None:
    assert trusted_skops_types(["sklearn.tree._tree.Tree"], []) == ["sklearn.tree._tree.Tree"]
    assert trusted_skops_types(["xgboost.core.Booster"], ["xgboost.core.Booster"]) == ["xgboost.core.Booster"]
    with pytest.raises(ModelLoadError, match=r"builtins.eval.*MLROLLOUT_SKOPS_TRUSTED_TYPES"):
        trusted_skops_types(["builtins.eval"], [])


def tree(left: list[int], right: list[int], feature: list[int], n_features: int = 2) -> SimpleNamespace:
    return SimpleNamespace(
        node_count=len(left),
        children_left=np.array(left),
        children_right=np.array(right),
        feature=np.array(feature),
        value=np.zeros((len(left), 1, 2)),
        n_features=n_features,
    )


def test_check_tree_refuses_indices_that_escape() -> None:
    check_tree(tree([1, -1, -1], [2, -1, -1], [0, -2, -2]))
    with pytest.raises(ModelLoadError, match="child indices"):
        check_tree(tree([5, -1, -1], [2, -1, -1], [0, -2, -2]))
    with pytest.raises(ModelLoadError, match="child indices"):
        check_tree(tree([0, -1, -1], [2, -1, -1], [0, -2, -2]))  # a loop back to itself
    with pytest.raises(ModelLoadError, match="features out of range"):
        check_tree(tree([1, -1, -1], [2, -1, -1], [7, -2, -2]))


def test_name_and_version_from_pinned_uri() -> None:
    assert name_and_version("models:/churn/7") == ("churn", "7")
    assert name_and_version("models:/churn@champion") == (None, None)
    assert name_and_version("runs:/abc/model") == (None, None)

"""Train small scikit-learn classifiers on data sets that ship with scikit-learn and register
them in a real MLflow registry, with F1 (macro) and accuracy logged on the source run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Dataset = Literal["breast_cancer", "iris", "wine"]
Kind = Literal["logreg", "tree"]
Quality = Literal["good", "poor"]

# Types beyond skops' defaults that each estimator kind needs trusted on load. MLflow 3 saves
# scikit-learn models with skops and records this list in the MLmodel file, so loaders trust
# exactly these and nothing else.
SKOPS_TRUSTED_TYPES: dict[str, list[str]] = {
    "logreg": [],
    "tree": ["sklearn.tree._tree.Tree"],
}


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/name/version
    source: str  # artifact location, loadable without the tracking server
    f1: float
    accuracy: float
    feature_names: list[str]
    classes: list[int]
    sample_rows: list[dict[str, float]]


def column_name(raw: str) -> str:
    """'mean radius' -> 'mean_radius', 'sepal length (cm)' -> 'sepal_length_cm'."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", raw).strip("_")


def load_dataset(dataset: Dataset) -> tuple[Any, Any, list[str]]:
    from sklearn import datasets

    loader = {
        "breast_cancer": datasets.load_breast_cancer,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
    }[dataset]
    bunch = loader(as_frame=True)
    frame = bunch.frame.copy()
    names = [column_name(c) for c in bunch.feature_names]
    features = frame[list(bunch.feature_names)].astype("float64")
    features.columns = names
    return features, frame["target"].astype("int64"), names


def train_and_register(
    tracking_uri: str,
    name: str,
    *,
    dataset: Dataset = "breast_cancer",
    kind: Kind = "logreg",
    quality: Quality = "good",
    alias: str | None = None,
    seed: int = 0,
) -> ModelVersionInfo:
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    x, y, names = load_dataset(dataset)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    if quality == "poor":
        # Labels shuffled: the model learns nothing, so its F1 is near chance.
        y_train = y_train.sample(frac=1.0, random_state=seed + 1).set_axis(y_train.index)
    estimator: Any
    if kind == "logreg":
        estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    else:
        estimator = DecisionTreeClassifier(max_depth=4, random_state=seed)
    estimator.fit(x_train, y_train)
    predicted = estimator.predict(x_test)
    f1 = float(f1_score(y_test, predicted, average="macro"))
    accuracy = float(accuracy_score(y_test, predicted))

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow.set_experiment(f"mlrollout-tests-{name}")
    with mlflow.start_run() as run:
        mlflow.log_params({"dataset": dataset, "kind": kind, "quality": quality})
        mlflow.log_metrics({"f1_score": f1, "accuracy": accuracy})
        signature = infer_signature(x_train.head(5), estimator.predict(x_train.head(5)))
        logged = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=signature,
            registered_model_name=name,
            skops_trusted_types=SKOPS_TRUSTED_TYPES[kind] or None,
        )
    versions = client.search_model_versions(f"name='{name}' and run_id='{run.info.run_id}'")
    version = str(max(int(v.version) for v in versions))
    if alias:
        client.set_registered_model_alias(name, alias, version)
    source = client.get_model_version_download_uri(name, version)
    del logged
    rows = x_test.head(5).to_dict(orient="records")
    classes = sorted(int(c) for c in np.unique(y))
    return ModelVersionInfo(
        name=name,
        version=version,
        run_id=run.info.run_id,
        model_uri=f"models:/{name}/{version}",
        source=source,
        f1=f1,
        accuracy=accuracy,
        feature_names=names,
        classes=classes,
        sample_rows=[{k: float(v) for k, v in r.items()} for r in rows],
    )

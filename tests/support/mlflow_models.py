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
    sample_rows: list[dict[str, Any]]  # floats (and strings for string columns)


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


def version_of_run(client: Any, name: str, run_id: str) -> str:
    """The version of registered model `name` that run `run_id` created (the highest, if several)."""
    versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return str(max(int(v.version) for v in versions))


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
    version = version_of_run(client, name, run.info.run_id)
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


# --------------------------------------------------------------------------- string columns, regressors
# A churn-like table: string columns a OneHotEncoder reads, numeric ones a StandardScaler reads, all in a
# ColumnTransformer, as a typical tabular model is built. The categories are fixed so that requests can
# be generated from them (and from values outside them).
CategoricalKind = Literal["classifier", "ridge", "gbr"]
CATEGORIES: dict[str, list[str]] = {
    "plan": ["basic", "standard", "premium"],
    "region": ["eu-west", "us-east", "ap-south", "sa-east"],
    "contract": ["monthly", "yearly", "two-year"],
}
NUMERIC_COLUMNS = ["tenure_months", "monthly_charges"]
CATEGORICAL_COLUMNS = list(CATEGORIES)
# The signature's column order (strings and numbers interleaved, as a real frame often is).
CATEGORICAL_FRAME_COLUMNS = ["plan", "tenure_months", "region", "monthly_charges", "contract"]
# Types beyond skops' defaults the categorical pipelines need trusted (the regressor's trees).
CATEGORICAL_SKOPS_TRUSTED_TYPES: dict[str, list[str]] = {
    "classifier": [],
    "ridge": [],
    "gbr": ["sklearn.tree._tree.Tree"],
}


def churn_frame(rows: int, seed: int = 0) -> tuple[Any, Any, Any]:
    """Features (string and float64 columns), a churn label (0/1) and a numeric target (lifetime value)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "plan": rng.choice(CATEGORIES["plan"], rows),
            "tenure_months": rng.uniform(0, 72, rows).round(1),
            "region": rng.choice(CATEGORIES["region"], rows),
            "monthly_charges": rng.uniform(15, 120, rows).round(2),
            "contract": rng.choice(CATEGORIES["contract"], rows),
        }
    )[CATEGORICAL_FRAME_COLUMNS]
    frame[NUMERIC_COLUMNS] = frame[NUMERIC_COLUMNS].astype("float64")
    for name in CATEGORICAL_COLUMNS:
        frame[name] = frame[name].astype(object)
    risk = (
        (frame["contract"] == "monthly") * 1.2
        - frame["tenure_months"] / 30
        + (frame["plan"] == "premium") * 0.4
        + (frame["region"] == "ap-south") * 0.3
        + rng.normal(0, 0.5, rows)
    )
    churn = (risk > 0).astype("int64")
    value = (
        frame["monthly_charges"] * frame["tenure_months"] / 10
        + (frame["plan"] == "premium") * 80.0
        + (frame["contract"] == "two-year") * 40.0
        + rng.normal(0, 5, rows)
    )
    return frame, churn, value.astype("float64")


def categorical_pipeline(
    kind: CategoricalKind = "classifier", seed: int = 0, *, shuffle_target: bool = False
) -> tuple[Any, Any, Any]:
    """A fitted Pipeline(ColumnTransformer(OneHotEncoder(handle_unknown='error') on the string columns,
    StandardScaler on the numeric ones), estimator), the training frame and its targets.
    shuffle_target: trained on permuted targets, so it answers like a model and is far off."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, churn, value = churn_frame(600, seed)
    prep = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="error"), CATEGORICAL_COLUMNS),
            ("numbers", StandardScaler(), NUMERIC_COLUMNS),
        ]
    )
    final: Any = {
        "classifier": LogisticRegression(max_iter=500),
        "ridge": Ridge(alpha=1.0),
        "gbr": GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=seed),
    }[kind]
    target = churn if kind == "classifier" else value
    if shuffle_target:
        target = target.iloc[np.random.default_rng(seed + 7).permutation(len(target))].reset_index(drop=True)
    pipeline = Pipeline([("prep", prep), ("model", final)]).fit(frame, target)
    return pipeline, frame, target


def save_categorical_model(
    path: str, kind: CategoricalKind = "classifier", seed: int = 0, *, profile: bool = False
) -> Any:
    """Save a categorical pipeline as MLflow does (skops, signature with string and double columns) in a
    local directory, no tracking server needed; returns the training frame. profile: with the
    training profile in its metadata, as the documented one-liner logs it."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from mlrollout.serving.profile import mlrollout_profile

    pipeline, frame, target = categorical_pipeline(kind, seed)
    mlflow.sklearn.save_model(
        pipeline,
        path,
        signature=infer_signature(frame.head(20), pipeline.predict(frame.head(20))),
        skops_trusted_types=CATEGORICAL_SKOPS_TRUSTED_TYPES[kind] or None,
        metadata=mlrollout_profile(frame, target) if profile else None,
    )
    return frame


def register_categorical_model(
    tracking_uri: str,
    name: str,
    *,
    kind: CategoricalKind = "classifier",
    seed: int = 0,
    shuffle_target: bool = False,
    profile: bool = False,
) -> ModelVersionInfo:
    """Register a categorical pipeline in a real MLflow registry (F1 and accuracy logged for the
    classifier, RMSE for the regressors); sample_rows hold strings and floats."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from mlrollout.serving.profile import mlrollout_profile
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error

    pipeline, frame, target = categorical_pipeline(kind, seed, shuffle_target=shuffle_target)
    test, test_churn, test_value = churn_frame(200, seed + 1000)
    predicted = pipeline.predict(test)
    if kind == "classifier":
        metrics = {
            "f1_score": float(f1_score(test_churn, predicted, average="macro")),
            "accuracy": float(accuracy_score(test_churn, predicted)),
        }
    else:
        metrics = {"rmse": float(np.sqrt(mean_squared_error(test_value, predicted)))}
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow.set_experiment(f"mlrollout-tests-{name}")
    with mlflow.start_run() as run:
        mlflow.log_params({"dataset": "churn-categorical", "kind": kind})
        mlflow.log_metrics(metrics)
        mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(frame.head(20), pipeline.predict(frame.head(20))),
            registered_model_name=name,
            skops_trusted_types=CATEGORICAL_SKOPS_TRUSTED_TYPES[kind] or None,
            metadata=mlrollout_profile(frame, target) if profile else None,
        )
    version = version_of_run(client, name, run.info.run_id)
    rows = test.head(5).to_dict(orient="records")
    return ModelVersionInfo(
        name=name,
        version=version,
        run_id=run.info.run_id,
        model_uri=f"models:/{name}/{version}",
        source=client.get_model_version_download_uri(name, version),
        f1=metrics.get("f1_score", 0.0),
        accuracy=metrics.get("accuracy", 0.0),
        feature_names=list(CATEGORICAL_FRAME_COLUMNS),
        classes=[0, 1] if kind == "classifier" else [],
        sample_rows=[{k: (v if isinstance(v, str) else float(v)) for k, v in r.items()} for r in rows],
    )

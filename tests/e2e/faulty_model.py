"""A model version that passes its offline gate but fails in serving: the "bad canary" of the e2e tests.

`BrokenClassifier.predict` raises a RuntimeError, as a buggy custom estimator would, so the serving
server answers a real 500 for every scoring call (ValueError/TypeError would be a 422: the client's
fault). Its f1_score on the run is what the estimator it claims to be scored offline, so the gate lets
it through and only live analysis can catch it.

The serving process must be able to import this module and trust the type: the e2e tests put this
folder on PYTHONPATH and set MLROLLOUT_SKOPS_TRUSTED_TYPES=faulty_model.BrokenClassifier in
spec.serving.env, which the operator copies into the Deployment and the pod runner into the process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin

TRUSTED_TYPE = "faulty_model.BrokenClassifier"
HERE = Path(__file__).resolve().parent


class BrokenClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Fits like a classifier; scoring always fails with a server-side error."""

    def fit(self, x: Any, y: Any) -> BrokenClassifier:
        import numpy as np

        self.classes_ = np.unique(y)
        self.n_features_in_ = x.shape[1]
        if hasattr(x, "columns"):
            self.feature_names_in_ = np.asarray(list(x.columns), dtype=object)
        return self

    def predict(self, x: Any) -> Any:
        raise RuntimeError("injected fault: this model version cannot score")


def register_broken(tracking_uri: str, name: str, *, claimed_f1: float = 0.95) -> str:
    """Register a BrokenClassifier version (breast_cancer columns); return its version number."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from support.mlflow_models import load_dataset

    x, y, _ = load_dataset("breast_cancer")
    estimator = BrokenClassifier().fit(x, y)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"mlrollout-tests-{name}")
    with mlflow.start_run() as run:
        mlflow.log_params({"dataset": "breast_cancer", "kind": "broken", "fault_injection": "predict raises"})
        mlflow.log_metrics({"f1_score": claimed_f1, "accuracy": claimed_f1})
        signature = infer_signature(x.head(5), y.head(5))
        mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=signature,
            registered_model_name=name,
            skops_trusted_types=[TRUSTED_TYPE],
        )
    client = MlflowClient(tracking_uri=tracking_uri)
    versions = client.search_model_versions(f"name='{name}' and run_id='{run.info.run_id}'")
    return str(max(int(v.version) for v in versions))


def serving_env() -> list[dict[str, str]]:
    """spec.serving.env entries that let the serving process load this type."""
    return [
        {"name": "PYTHONPATH", "value": str(HERE)},
        {"name": "MLROLLOUT_SKOPS_TRUSTED_TYPES", "value": TRUSTED_TYPE},
    ]

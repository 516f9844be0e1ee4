"""Model versions that misbehave in serving, logged as MLflow "models from code": the model's Python
file travels inside its artifacts, so a serving pod (which has none of the test code) loads it from
the registry like any pyfunc model. Loading code is a trust decision: the serving container needs
MLROLLOUT_ALLOW_PICKLE=true for these, as it would for any non-skops flavor.

- `fails=True`: every scoring call raises RuntimeError, as a buggy custom model would, so the server
  answers a real 500 (ValueError/TypeError would be a 422: the client's fault).
- `load_seconds=N`: loading the model takes N seconds (a large model, a slow download); a model that
  never finishes loading is `load_seconds=LOAD_FOREVER`.

The f1_score logged on the run is what its author claims offline, so the gate lets these through and
only the rollout's own checks (readiness, deadline, live analysis) can catch them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from support.mlflow_models import ModelVersionInfo, load_dataset, version_of_run

LOAD_FOREVER = 10**7
SERVING_ENV = ({"name": "MLROLLOUT_ALLOW_PICKLE", "value": "true"},)

_MODEL_CODE = '''\
"""mlrollout test model (models from code): {what}."""
import time

import mlflow
from mlflow.pyfunc import PythonModel

LOAD_SECONDS = {load_seconds}
FAILS = {fails}


class CodeModel(PythonModel):
    def load_context(self, context):
        time.sleep(LOAD_SECONDS)

    def predict(self, context, model_input, params=None):
        if FAILS:
            raise RuntimeError("injected fault: this model version cannot score")
        return [{constant}] * len(model_input)


mlflow.models.set_model(CodeModel())
'''


def register_code_model(
    tracking_uri: str,
    name: str,
    *,
    fails: bool = False,
    load_seconds: int = 0,
    claimed_f1: float = 0.95,
    constant: int = 1,
) -> ModelVersionInfo:
    """Register a version of `name` (breast_cancer columns) whose behaviour is set by the arguments."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    what = "raises on every prediction" if fails else f"predicts {constant} for every row"
    if load_seconds:
        what += f", loads in {load_seconds} s"
    x, y, names = load_dataset("breast_cancer")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"mlrollout-tests-{name}")
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        code = Path(tmp) / "code_model.py"
        code.write_text(
            _MODEL_CODE.format(what=what, load_seconds=load_seconds, fails=fails, constant=constant)
        )
        mlflow.log_params({"dataset": "breast_cancer", "kind": "code", "behaviour": what})
        mlflow.log_metrics({"f1_score": claimed_f1, "accuracy": claimed_f1})
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            signature=infer_signature(x.head(5), y.head(5)),
            registered_model_name=name,
            # Given, MLflow does not import the model in a subprocess to infer them (that would
            # run load_context, and sleep).
            pip_requirements=["mlflow-skinny"],
        )
    client = MlflowClient(tracking_uri=tracking_uri)
    version = version_of_run(client, name, run.info.run_id)
    rows = x.head(5).to_dict(orient="records")
    return ModelVersionInfo(
        name=name,
        version=version,
        run_id=run.info.run_id,
        model_uri=f"models:/{name}/{version}",
        source=client.get_model_version_download_uri(name, version),
        f1=claimed_f1,
        accuracy=claimed_f1,
        feature_names=names,
        classes=sorted(int(c) for c in set(y)),
        sample_rows=[{k: float(v) for k, v in r.items()} for r in rows],
    )

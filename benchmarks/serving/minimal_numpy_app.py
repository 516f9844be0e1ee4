"""The leanest baseline people write: no pandas, a numpy array straight into the estimator.

Like minimal_app.py (no validation, auth, metrics or logging) but without the DataFrame: the body's
`dataframe_split.data` becomes a float64 array and goes to sklearn's predict as is, so what is left is
Flask, json and sklearn's own input checks. Under mlrollout's gunicorn settings (gthread, 8 threads),
not gunicorn's defaults, so the difference to mlrollout is the request path, not the worker model.

Run: MODEL_DIR=<mlflow model dir> MLROLLOUT_BIND=127.0.0.1:PORT .venv/bin/python -P minimal_numpy_app.py"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
from flask import Flask, jsonify, request
from mlrollout.serving.cli import _Application
from mlrollout.serving.gunicorn_config import gunicorn_options, prepare_multiprocess_dir

# Fitted on a DataFrame, predicting on an array: sklearn warns once per call site about feature names.
warnings.filterwarnings("ignore", message="X does not have valid feature names")

_path = Path(os.environ["MODEL_DIR"]) / "model.skops"
model = skops.io.load(_path, trusted=skops.io.get_untrusted_types(file=_path))
app = Flask(__name__)


@app.post("/invocations")
def invocations():  # type: ignore[no-untyped-def]
    x = np.asarray(request.get_json()["dataframe_split"]["data"], dtype=np.float64)
    return jsonify(predictions=model.predict(x).tolist())


@app.get("/ping")
def ping():  # type: ignore[no-untyped-def]
    return "ok"


class Minimal(_Application):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(None, None, options)

    def load(self) -> Any:
        return app


if __name__ == "__main__":
    prepare_multiprocess_dir(os.environ)  # mlrollout's post_fork/child_exit hooks expect it
    Minimal(gunicorn_options(os.environ)).run()

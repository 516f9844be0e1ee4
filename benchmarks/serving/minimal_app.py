"""The baseline: the smallest reasonable Flask endpoint for the same model, as people write it.

No validation, auth, metrics or logging; pandas DataFrame in, sklearn predict, jsonify out.
Run: MODEL_DIR=<mlflow model dir> gunicorn -w 2 -b 127.0.0.1:PORT benchmarks.serving.minimal_app:app"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import skops.io
from flask import Flask, jsonify, request

_path = Path(os.environ["MODEL_DIR"]) / "model.skops"
model = skops.io.load(_path, trusted=skops.io.get_untrusted_types(file=_path))
app = Flask(__name__)


@app.post("/invocations")
def invocations():  # type: ignore[no-untyped-def]
    split = request.get_json()["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    return jsonify(predictions=model.predict(frame).tolist())


@app.get("/ping")
def ping():  # type: ignore[no-untyped-def]
    return "ok"

"""What string columns and the training profile's input bins cost per request, in process (the serving
core's invocations() path, no HTTP, so the model-dependent part alone): the anchor is a numeric model
(StandardScaler + LogisticRegression on breast_cancer, 30 float columns); then a mixed-type churn model
(ColumnTransformer: OneHotEncoder on 3 string columns, StandardScaler on 2 floats, + Ridge) saved
without and with a training profile. 1-row and 100-row dataframe_records bodies, the three interleaved
round by round so machine noise hits all of them.

    .venv/bin/python -P benchmarks/serving/input_bins_cost.py [--requests 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from mlrollout.serving.app import create_app
from mlrollout.serving.auth import ApiKeys
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.loading import load_model
from prometheus_client import CollectorRegistry
from support.mlflow_models import churn_frame, load_dataset, save_categorical_model


def service(path: str) -> object:
    app = create_app(
        load_model(path, name="churn", version="1"), ServingConfig(), ApiKeys(), CollectorRegistry()
    )
    return app.extensions["mlrollout"].service


def save_numeric_model(path: str) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, _ = load_dataset("breast_cancer")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    mlflow.sklearn.save_model(model, path, signature=infer_signature(x.head(20), model.predict(x.head(20))))


def per_request_us(svc: object, body: bytes, requests: int) -> float:
    call = svc.invocations  # type: ignore[attr-defined]
    started = time.perf_counter()
    for i in range(requests):
        call(body, "application/json", str(i))
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        save_numeric_model(f"{tmp}/numeric")
        save_categorical_model(f"{tmp}/plain", "ridge")
        save_categorical_model(f"{tmp}/profiled", "ridge", profile=True)
        services = {
            "numeric, 30 floats (anchor)": service(f"{tmp}/numeric"),
            "mixed, 3 strings + 2 floats": service(f"{tmp}/plain"),
            "mixed + training profile": service(f"{tmp}/profiled"),
        }
        x, _, _ = load_dataset("breast_cancer")
        print("| model | rows/request | us/request | vs anchor |\n|---|---:|---:|---:|")
        for rows in (1, 100):
            frame, _, _ = churn_frame(rows, seed=5)
            bodies = {
                name: orjson.dumps(
                    {
                        "dataframe_records": (x.head(rows) if name.startswith("numeric") else frame).to_dict(
                            orient="records"
                        )
                    }
                )
                for name in services
            }
            n = args.requests if rows == 1 else max(1, args.requests // 10)
            times: dict[str, list[float]] = {k: [] for k in services}
            for _ in range(args.rounds):
                for name, svc in services.items():
                    times[name].append(per_request_us(svc, bodies[name], n))
            anchor = statistics.median(times["numeric, 30 floats (anchor)"])
            for name in services:
                median = statistics.median(times[name])
                print(f"| {name} | {rows} | {median:.1f} | {median / anchor:.2f}x |")
        print(
            f"\n(median of {args.rounds} interleaved rounds; "
            f"{args.requests} 1-row or {args.requests // 10} 100-row calls each)"
        )


if __name__ == "__main__":
    main()

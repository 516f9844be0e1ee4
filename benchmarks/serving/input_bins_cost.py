"""What counting inputs in the training profile's bins costs per request, in process (the serving core's
invocations() path, no HTTP): the same ColumnTransformer + Ridge churn model saved with and without a
profile, 1-row and 100-row dataframe_records bodies, runs interleaved A/B so machine noise hits both.

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
from support.mlflow_models import churn_frame, save_categorical_model


def service(path: str) -> object:
    app = create_app(
        load_model(path, name="churn", version="1"), ServingConfig(), ApiKeys(), CollectorRegistry()
    )
    return app.extensions["mlrollout"].service


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
        save_categorical_model(f"{tmp}/plain", "ridge")
        save_categorical_model(f"{tmp}/profiled", "ridge", profile=True)
        services = {"no profile": service(f"{tmp}/plain"), "profile": service(f"{tmp}/profiled")}
        for rows in (1, 100):
            frame, _, _ = churn_frame(rows, seed=5)
            body = orjson.dumps({"dataframe_records": frame.to_dict(orient="records")})
            n = args.requests if rows == 1 else max(1, args.requests // 10)
            times: dict[str, list[float]] = {k: [] for k in services}
            for _ in range(args.rounds):
                for name, svc in services.items():
                    times[name].append(per_request_us(svc, body, n))
            base, with_bins = (statistics.median(times[k]) for k in ("no profile", "profile"))
            print(
                f"{rows:>3}-row: no profile {base:8.1f} us/request, profile {with_bins:8.1f} us/request, "
                f"ratio {with_bins / base:.3f} (median of {args.rounds} interleaved rounds of {n})"
            )


if __name__ == "__main__":
    main()

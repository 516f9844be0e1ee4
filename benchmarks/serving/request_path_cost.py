"""What each part of mlrollout's scoring path costs per 1-row request, in process (no sockets, no
gunicorn, no load tool: those are the same for the ceiling and mlrollout, so the difference between
them is what this measures, with far less noise than HTTP on a shared 2-core machine).

Two tables, each interleaved round by round (median of --rounds):
1. The whole WSGI call (`ScoringRoutes`, the app gunicorn runs) with every feature on, then with each
   switchable one off, against the ceiling app (benchmarks/serving/ceiling_app.py) as the anchor.
2. The parts that have no switch, timed alone on the same request: JSON parse, schema checks,
   predict, recording (class counts, feedback slot, signed token), serialization, request metrics,
   the access-log line.

Prometheus runs in multiprocess mode (mmap files) and the access log goes through the same formatter
as `mlrollout-serve`'s, into a null stream, as in a pod.

    .venv/bin/python -P benchmarks/serving/request_path_cost.py [--requests 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="mlrollout-cost-metrics-"))

import orjson  # noqa: E402
from mlrollout.serving import logs, parsing  # noqa: E402
from mlrollout.serving.app import create_app  # noqa: E402
from mlrollout.serving.auth import ApiKeys  # noqa: E402
from mlrollout.serving.config import ServingConfig  # noqa: E402
from mlrollout.serving.loading import load_model  # noqa: E402
from mlrollout.serving.logs import ACCESS_LOGGER, ACCESS_MESSAGE, AccessLog  # noqa: E402
from mlrollout.serving.service import _dump_predictions  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

KEY = "cost-key"


def save_model(path: str) -> list[str]:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from support.mlflow_models import load_dataset

    x, y, names = load_dataset("breast_cancer")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    mlflow.sklearn.save_model(model, path, signature=infer_signature(x.head(20), model.predict(x.head(20))))
    return list(names)


def environ(body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/invocations",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {KEY}",
        "wsgi.input": io.BytesIO(body),
    }


def wsgi_us(app: Callable[..., Any], body: bytes, requests: int) -> float:
    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        assert status.startswith("200"), status

    envs = [environ(body) for _ in range(requests)]  # built before the clock starts
    started = time.perf_counter()
    for env in envs:
        b"".join(app(env, start_response))
    return (time.perf_counter() - started) / requests * 1e6


def timed_us(fn: Callable[[int], object], requests: int) -> float:
    started = time.perf_counter()
    for i in range(requests):
        fn(i)
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    access = logging.getLogger(ACCESS_LOGGER)
    access_log = AccessLog(access)
    # mlrollout-serve's own logging set-up (cached-second formatter, batched access log), to a null stream.
    logs.configure("INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the run
    from ceiling_app import app as ceiling

    with tempfile.TemporaryDirectory() as tmp:
        names = save_model(f"{tmp}/model")
        model = load_model(f"{tmp}/model", name="cost", version="1")
        # MLROLLOUT_FASTPATH acts at load time: the fast-path-off row needs its own model.
        native = load_model(f"{tmp}/model", name="cost", version="1", fastpath=False)
        keys = ApiKeys.from_sources(None, KEY)
        base = ServingConfig(track="stable")
        from support.mlflow_models import load_dataset

        frame, _, _ = load_dataset("breast_cancer")
        body = orjson.dumps(
            {"dataframe_split": {"columns": names, "data": frame.head(1).to_numpy().tolist()}}
        )

        def app(config: ServingConfig, with_keys: bool = True, loaded: Any = model) -> Callable[..., Any]:
            # Each app its own registry (names repeat); values still go to the multiprocess mmap files.
            return create_app(loaded, config, keys if with_keys else ApiKeys(), CollectorRegistry()).wsgi_app

        variants: dict[str, Callable[..., Any]] = {
            "ceiling: no model (anchor)": ceiling,
            "mlrollout, every feature on": app(base),
            "API-key auth off": app(base, with_keys=False),
            "access log off": app(replace(base, log_requests=False)),
            "micro-batching forced on (auto: off on the fast path)": app(replace(base, microbatch=True)),
            "fast path off (sklearn's own predict; auto batches it)": app(base, loaded=native),
        }
        whole: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                whole[name].append(wsgi_us(fn, body, args.requests))

        svc = create_app(model, base, keys, CollectorRegistry()).extensions["mlrollout"].service
        schema, limits = model.schema, base.limits
        batch = parsing.parse_invocations_json(parsing.load_json(body), schema, limits)
        predictions = model.predict(batch.values)
        metrics = svc.metrics

        def checks(_: int) -> None:
            batch.missing_counts(schema)
            parsing.validate(batch, schema)

        parts: dict[str, Callable[[int], object]] = {
            "JSON parse into the schema's matrix": lambda _: parsing.parse_invocations_json(
                parsing.load_json(body), schema, limits
            ),
            "schema checks (missing values, types)": checks,
            "predict (verified fast path)": lambda _: model.predict(batch.values),
            "record: class counts, feedback slot, signed token": lambda i: svc._record(predictions, str(i)),
            "serialize the predictions": lambda _: _dump_predictions(predictions),
            "request metrics (counter + latency histogram)": lambda _: metrics.request(
                "invocations", 200, 0.001
            ),
            "stage histograms (parse, predict, serialize)": lambda _: [
                metrics.stage[s].observe(0.0001) for s in ("parse", "predict", "serialize")
            ],
            "access-log line (AccessLog: queued straight into the buffered handler)": lambda i: (
                access_log.write("POST", "/invocations", 200, 0.5, str(i))
            ),
            "the same line through logging.Logger.info (before 2026-12-07)": lambda i: access.info(
                ACCESS_MESSAGE, "POST", "/invocations", 200, 0.5, str(i)
            ),
            "API-key check": lambda _: keys.check(_Headers(f"Bearer {KEY}")),
        }
        alone: dict[str, list[float]] = {k: [] for k in parts}
        for _ in range(args.rounds):
            for name, part in parts.items():
                alone[name].append(timed_us(part, args.requests))

    anchor = statistics.median(whole["ceiling: no model (anchor)"])
    full = statistics.median(whole["mlrollout, every feature on"])
    print(f"{args.rounds} interleaved rounds of {args.requests} 1-row requests each; medians\n")
    print("| WSGI call | us/request | vs ceiling | saved vs every feature on |\n|---|---:|---:|---:|")
    for name, values in whole.items():
        median = statistics.median(values)
        saved = "" if name.startswith("ceiling") or name.endswith("on") else f"{full - median:+.1f} us"
        print(f"| {name} | {median:.1f} | {median / anchor:.2f}x | {saved} |")
    print("\n| part, timed alone | us/request | share of (every feature on - ceiling) |\n|---|---:|---:|")
    for name, values in alone.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / (full - anchor):.0%} |")


class _Headers:
    def __init__(self, authorization: str) -> None:
        self._authorization = authorization

    def get(self, key: str, /) -> str | None:
        return self._authorization if key.lower() == "authorization" else None


if __name__ == "__main__":
    main()

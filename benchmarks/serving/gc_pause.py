"""A full garbage collection in a serving process, with and without gunicorn's master having frozen
what it preloaded (serving/gunicorn_config.py `pre_fork`): the pause every request in flight on a
worker waits out when the collector walks the whole heap.

    flock /tmp/mlrollout-heavy.lock .venv/bin/python -P benchmarks/serving/gc_pause.py
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "tests")]

from mlrollout.serving.app import create_app  # noqa: E402
from mlrollout.serving.auth import ApiKeys  # noqa: E402
from mlrollout.serving.config import ServingConfig  # noqa: E402
from mlrollout.serving.loading import load_model  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from request_path_cost import KEY, save_model  # noqa: E402


def full_collection_ms(times: int = 5) -> float:
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        gc.collect()
        taken.append((time.perf_counter() - started) * 1000)
    return statistics.median(taken)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        save_model(f"{tmp}/model")
        model = load_model(f"{tmp}/model", name="gc", version="1")
        create_app(model, ServingConfig(track="stable"), ApiKeys.from_sources(None, KEY), CollectorRegistry())
        tracked = len(gc.get_objects())
        unfrozen = full_collection_ms()
        gc.freeze()
        frozen = full_collection_ms()
        print(
            "| full collection (gc.collect) in a process with the app and model loaded | ms (median of 5) |"
        )
        print("|---|---:|")
        print(f"| as it is ({tracked:,} tracked objects) | {unfrozen:.2f} |")
        print(f"| after gc.freeze() ({gc.get_freeze_count():,} objects frozen) | {frozen:.2f} |")


if __name__ == "__main__":
    main()

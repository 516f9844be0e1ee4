"""Load for a serving Service: real HTTP calls, every response checked, counted by the model version
that answered (the X-Model-Version header), optional ground-truth feedback through the same Service.

Point it at any mlrollout Service (from a pod in the cluster, or through a port-forward):

    locust -f benchmarks/load/locustfile.py --headless -u 16 -r 16 -t 60s \
        --host http://churn.ml:8080

Settings (environment):
  MLROLLOUT_LOAD_ROWS        JSON file: a list of {"features": {...}, "label": ...} (default: one
                             row of zeros for MLROLLOUT_LOAD_FEATURES)
  MLROLLOUT_LOAD_FEATURES    comma-separated column names for the default row
  MLROLLOUT_LOAD_FEEDBACK    share of answered predictions that get their label posted (0..1)
  MLROLLOUT_LOAD_NEW_CONNECTIONS  1: a new TCP connection per request, so kube-proxy picks a pod
                             per request and shares follow the ready pods; 0: keep-alive (each
                             user sticks to one pod, as long-lived clients do)
  MLROLLOUT_LOAD_WAIT        seconds each user waits between requests (default 0: as fast as the
                             Service answers); users / wait bounds the request rate
  MLROLLOUT_LOAD_MAX_REQUESTS stop after this many scoring requests (bound in count; -t bounds time)
  MLROLLOUT_LOAD_STOP_FILE   stop when this file appears (e.g. `kubectl exec POD -- touch FILE`)
  MLROLLOUT_LOAD_API_KEY     sent as a Bearer token when set
  MLROLLOUT_LOAD_HEADERS     JSON object of extra request headers (e.g. {"X-Canary": "always"} for a
                             header route)

At the end it prints one line `MLROLLOUT-LOAD-SUMMARY {json}`: requests and failures per model
version and status, failures with their reasons, feedback results, and the wall time.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, constant, events, task
from locust.exception import StopUser

SUMMARY_PREFIX = "MLROLLOUT-LOAD-SUMMARY"


def _rows() -> list[dict[str, Any]]:
    path = os.environ.get("MLROLLOUT_LOAD_ROWS")
    if path:
        rows = json.loads(Path(path).read_text())
        if not isinstance(rows, list) or not rows:
            raise SystemExit(f"{path}: expected a non-empty JSON list of rows")
        return rows
    features = [f for f in os.environ.get("MLROLLOUT_LOAD_FEATURES", "x").split(",") if f]
    return [{"features": dict.fromkeys(features, 0.0), "label": None}]


ROWS = _rows()
FEEDBACK_SHARE = float(os.environ.get("MLROLLOUT_LOAD_FEEDBACK", "0"))
NEW_CONNECTIONS = os.environ.get("MLROLLOUT_LOAD_NEW_CONNECTIONS", "1") == "1"
MAX_REQUESTS = int(os.environ.get("MLROLLOUT_LOAD_MAX_REQUESTS", "0"))
STOP_FILE = os.environ.get("MLROLLOUT_LOAD_STOP_FILE", "")
API_KEY = os.environ.get("MLROLLOUT_LOAD_API_KEY", "")
WAIT_SECONDS = float(os.environ.get("MLROLLOUT_LOAD_WAIT", "0"))
EXTRA_HEADERS: dict[str, str] = {
    str(k): str(v) for k, v in json.loads(os.environ.get("MLROLLOUT_LOAD_HEADERS") or "{}").items()
}


class Tally:
    def __init__(self) -> None:
        self.by_version: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.feedback: Counter[str] = Counter()
        self.requests = 0  # answered or failed, i.e. finished
        self.sent = 0
        self.started = time.monotonic()
        self.first_failure_at: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "requests": self.requests,
            "ok": sum(self.by_version.values()),
            "by_version": dict(self.by_version),
            "by_status": dict(self.by_status),
            "failed": sum(self.failures.values()),
            "failures": dict(self.failures.most_common(20)),
            "feedback": dict(self.feedback),
            "seconds": round(time.monotonic() - self.started, 2),
            "new_connections": NEW_CONNECTIONS,
        }


TALLY = Tally()


class ServingUser(HttpUser):
    wait_time = constant(WAIT_SECONDS)

    def on_start(self) -> None:
        self.headers = {"Content-Type": "application/json", **EXTRA_HEADERS}
        if NEW_CONNECTIONS:
            self.headers["Connection"] = "close"
        if API_KEY:
            self.headers["Authorization"] = f"Bearer {API_KEY}"

    @task
    def score(self) -> None:
        if MAX_REQUESTS and TALLY.sent >= MAX_REQUESTS:
            # Quit from another greenlet: quitting kills every user, this one included.
            gevent.spawn(self.environment.runner.quit)
            raise StopUser()
        row = random.choice(ROWS)
        body = json.dumps({"dataframe_records": [row["features"]]})
        TALLY.sent += 1
        with self.client.post("/invocations", data=body, headers=self.headers, catch_response=True) as resp:
            TALLY.requests += 1
            status = resp.status_code
            TALLY.by_status[str(status)] += 1
            version = resp.headers.get("X-Model-Version", "")
            if status != 200 or not version:
                reason = f"{status} {resp.text[:120]!r}" if status else f"no response: {resp.error!r}"[:160]
                TALLY.failures[reason] += 1
                resp.failure(reason)
                return
            TALLY.by_version[version] += 1
            resp.success()
            # The signed token names the version that predicted, so feedback may reach any pod.
            token = resp.headers.get("X-Prediction-Token", "")
        if row.get("label") is not None and token and random.random() < FEEDBACK_SHARE:
            self._feedback(token, row["label"])

    def _feedback(self, token: str, label: Any) -> None:
        body = json.dumps({"token": token, "labels": [label]})
        with self.client.post(
            "/feedback", data=body, headers=self.headers, name="/feedback", catch_response=True
        ) as resp:
            TALLY.feedback[str(resp.status_code)] += 1
            resp.success()  # feedback results are reported on their own, not as scoring failures


def _watch_stop_file(environment: Any) -> None:
    while not Path(STOP_FILE).exists():
        gevent.sleep(0.2)
    environment.runner.quit()


@events.test_start.add_listener
def _on_start(environment: Any, **_: Any) -> None:
    TALLY.started = time.monotonic()
    if STOP_FILE:
        gevent.spawn(_watch_stop_file, environment)


@events.quitting.add_listener
def _on_quit(environment: Any, **_: Any) -> None:
    print(f"{SUMMARY_PREFIX} {json.dumps(TALLY.summary(), sort_keys=True)}", flush=True)
    # The run's verdict is ours (every response checked), not locust's failure ratio.
    environment.process_exit_code = 0 if TALLY.requests and not TALLY.failures else 1

"""Shadow mirroring between two real HTTP servers (the serving app under werkzeug's threaded server,
in this process): a stable server copies scoring requests to a shadow server and compares answers.

What the user gets never depends on the shadow: the tests block, break and remove the shadow and
check every user answer is the stable one."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import requests
from flask import Flask, Response
from mlrollout.serving.app import create_app
from mlrollout.serving.auth import ApiKeys
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.model import LoadedModel
from mlrollout.serving.schema import Column, InputSchema
from mlrollout.serving.shadow import DisagreementLog
from mlrollout.serving.shadow_settings import ShadowSettings
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

WAIT = 15.0  # seconds any background effect may take here; every wait is bounded by it


class Threshold:
    def __init__(self, flip: bool = False, gate: threading.Event | None = None) -> None:
        self.flip = flip
        self.gate = gate

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(WAIT)
        out = (x[:, 0] > 0.5).astype(np.int64)
        return 1 - out if self.flip else out


def model(version: str, **kw: Any) -> LoadedModel:
    return LoadedModel(
        name="thr",
        version=version,
        schema=InputSchema((Column("x", "double"), Column("y", "double"))),
        predictor=Threshold(**kw),
        flavor="sklearn",
        source="memory",
        classes=(0, 1),
    )


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()  # refuse connections from here on (not queue them unanswered)
        thread.join(WAIT)


def close_connection(response: Response) -> Response:
    response.headers["Connection"] = "close"
    return response


class Stable:
    def __init__(self, url: str, registry: CollectorRegistry, app: Flask) -> None:
        self.url = url
        self.registry = registry
        self.app = app

    def count(self, name: str, **labels: str) -> float:
        base = {"model": "thr", "model_version": "1", "track": "stable", "shadow_version": "2"}
        return self.registry.get_sample_value(name, {**base, **labels}) or 0.0

    def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not check():
            assert time.monotonic() < deadline, f"timed out after {WAIT}s waiting for {what}"
            time.sleep(0.02)

    def copies(self, outcome: str) -> float:
        return self.count("mlrollout_shadow_requests_total", outcome=outcome)

    def wait_copies(self, n: int, outcome: str) -> None:
        self.wait_for(f"{n} {outcome} copies", lambda: self.copies(outcome) == n)


@contextmanager
def stable_server(
    tmp_path: Path, shadow_url: str | None, *, keys: ApiKeys | None = None, **settings: Any
) -> Iterator[Stable]:
    path = tmp_path / "shadow.json"
    payload = {"target": shadow_url or "http://127.0.0.1:9", "version": "2", "percent": 100, **settings}
    path.write_text(json.dumps(payload))
    registry = CollectorRegistry()
    config = ServingConfig(shadow_config=str(path), log_requests=False, shadow_queue=8, shadow_senders=1)
    app = create_app(model("1"), config, keys or ApiKeys(), registry)
    with serve(app) as url:
        stable = Stable(url, registry, app)
        state = app.extensions["mlrollout"]
        mirror = state.service.shadow
        assert mirror is not None
        assert mirror.settings == ShadowSettings.parse(payload)
        yield stable
        mirror.stop()


def shadow_app(**kw: Any) -> tuple[Flask, CollectorRegistry]:
    registry = CollectorRegistry()
    config = ServingConfig(track="canary", log_requests=False)
    return create_app(model("2", **kw), config, ApiKeys(), registry), registry


ROWS = [[0.9, 0.0], [0.1, 0.0], [0.7, 1.0]]
ANSWERS = [1, 0, 1]


def score(stable: Stable, n: int, **headers: str) -> None:
    """n user requests; every answer must be the stable version's."""
    with requests.Session() as s:
        for i in range(n):
            r = s.post(
                f"{stable.url}/invocations",
                json={"instances": ROWS},
                headers={"X-Request-ID": f"req-{i}", **headers},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"predictions": ANSWERS}
            assert r.headers["X-Model-Version"] == "1"


def test_an_identical_shadow_agrees_on_every_row(tmp_path: Path) -> None:
    app, shadow_registry = shadow_app()
    with serve(app) as shadow_url, stable_server(tmp_path, shadow_url) as stable:
        score(stable, 20)
        stable.wait_for(
            "20 answered copies",
            lambda: stable.count("mlrollout_shadow_requests_total", outcome="answered") == 20,
        )
        assert stable.count("mlrollout_shadow_rows_total", result="agree") == 60
        assert stable.count("mlrollout_shadow_rows_total", result="disagree") == 0
        assert stable.count("mlrollout_shadow_duration_seconds_count") == 20
        # The shadow served the copies as its own (canary) requests: its error rate and latency.
        seen = shadow_registry.get_sample_value(
            "mlrollout_requests_total",
            {
                "model": "thr",
                "model_version": "2",
                "track": "canary",
                "endpoint": "invocations",
                "status": "200",
            },
        )
        assert seen == 20
        body = requests.get(f"{stable.url}/shadow/disagreements", timeout=10).json()
        assert body["shadow"] == {
            "target": shadow_url,
            "version": "2",
            "percent": 100.0,
            "recordInputs": False,
        }
        assert body["disagreements"] == []


def test_a_disagreeing_shadow_is_counted_and_sampled_without_inputs(tmp_path: Path) -> None:
    app, _ = shadow_app(flip=True)
    with serve(app) as shadow_url, stable_server(tmp_path, shadow_url) as stable:
        score(stable, 5)
        stable.wait_for(
            "5 answered copies",
            lambda: stable.count("mlrollout_shadow_requests_total", outcome="answered") == 5,
        )
        assert stable.count("mlrollout_shadow_rows_total", result="disagree") == 15
        assert stable.count("mlrollout_shadow_rows_total", result="agree") == 0
        sample = requests.get(f"{stable.url}/shadow/disagreements", params={"limit": 4}, timeout=10).json()
        rows = sample["disagreements"]
        assert len(rows) == 4
        first = rows[0]
        assert set(first) == {
            "time",
            "requestId",
            "row",
            "stableVersion",
            "stablePrediction",
            "shadowVersion",
            "shadowPrediction",
        }  # no input: recordInputs is off by default
        assert first["stablePrediction"] == ANSWERS[first["row"]]
        assert first["shadowPrediction"] == 1 - ANSWERS[first["row"]]
        assert {r["requestId"] for r in rows} <= {f"req-{i}" for i in range(5)}
        bad = requests.get(f"{stable.url}/shadow/disagreements", params={"limit": "x"}, timeout=10)
        assert bad.status_code == 400
        assert bad.json()["error"]["field"] == "limit"


def test_inputs_are_recorded_only_when_allowed(tmp_path: Path) -> None:
    app, _ = shadow_app(flip=True)
    with serve(app) as shadow_url, stable_server(tmp_path, shadow_url, recordInputs=True) as stable:
        score(stable, 1)
        stable.wait_for(
            "the copy", lambda: stable.count("mlrollout_shadow_rows_total", result="disagree") == 3
        )

        def sample() -> list[dict[str, Any]]:
            got = requests.get(f"{stable.url}/shadow/disagreements", timeout=10).json()
            return list(got["disagreements"])

        stable.wait_for("3 sampled rows", lambda: len(sample()) == 3)
        by_row = {r["row"]: r for r in sample()}
        assert by_row[2]["input"] == {"x": 0.7, "y": 1.0}


def test_a_missing_shadow_costs_the_user_nothing_and_is_not_ready_not_failing(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens, every copy is refused. A shadow that never
    # answered is not routed yet (its Service lags its Ready pods): not_ready, none of its error rate.
    with stable_server(tmp_path, "http://127.0.0.1:9") as stable:
        score(stable, 10)
        stable.wait_for(
            "10 not_ready copies",
            lambda: (
                stable.count("mlrollout_shadow_requests_total", outcome="not_ready")
                + stable.count("mlrollout_shadow_requests_total", outcome="dropped")
                == 10
            ),
        )
        assert stable.count("mlrollout_shadow_requests_total", outcome="not_ready") >= 1
        assert stable.count("mlrollout_shadow_requests_total", outcome="unreachable") == 0
        assert stable.count("mlrollout_shadow_requests_total", outcome="answered") == 0


def test_a_blocked_shadow_never_holds_a_user_request(tmp_path: Path) -> None:
    gate = threading.Event()
    app, _ = shadow_app(gate=gate)
    try:
        with serve(app) as shadow_url, stable_server(tmp_path, shadow_url, timeoutMs=200) as stable:
            # The shadow answers nothing while the gate is shut; all 40 user requests are answered
            # by stable meanwhile, and every copy ends as dropped (queue full), timeout, or failed
            # fast after a timeout (not_ready: this shadow never answered), none answered.
            score(stable, 40)

            def failed() -> float:
                outcomes = ("dropped", "timeout", "not_ready")
                return sum(stable.count("mlrollout_shadow_requests_total", outcome=o) for o in outcomes)

            stable.wait_for("every copy counted", lambda: failed() == 40)
            assert stable.count("mlrollout_shadow_requests_total", outcome="timeout") >= 1
            assert stable.count("mlrollout_shadow_requests_total", outcome="answered") == 0
    finally:
        gate.set()


def test_a_shadow_that_answered_then_went_is_unreachable_and_fails_fast(tmp_path: Path) -> None:
    # The shadow answers once (closing the connection), then stops listening: the copies after are
    # refused, and once BREAKER_FAILURES of them in a row were, the next ones fail without a
    # connection attempt (so a dead shadow's error rate shows at the copy rate, not as drops).
    app, _ = shadow_app()
    app.after_request(close_connection)
    with contextlib.ExitStack() as shadow:
        shadow_url = shadow.enter_context(serve(app))
        with stable_server(tmp_path, shadow_url) as stable:
            score(stable, 1)
            stable.wait_copies(1, "answered")
            shadow.close()  # the shadow server stops and closes its socket
            score(stable, 6)
            stable.wait_copies(6, "unreachable")
            assert stable.copies("dropped") == stable.copies("not_ready") == 0


def test_one_slow_answer_is_one_error_not_a_second_of_them(tmp_path: Path) -> None:
    # The shadow answers, then one copy outlives the step's timeout, then it answers again. A single
    # timeout must not fail the next copies fast (that takes BREAKER_FAILURES in a row).
    gate = threading.Event()
    gate.set()
    app, _ = shadow_app(gate=gate)
    try:
        with serve(app) as shadow_url, stable_server(tmp_path, shadow_url, timeoutMs=200) as stable:
            score(stable, 1)
            stable.wait_copies(1, "answered")
            gate.clear()
            score(stable, 1)
            stable.wait_copies(1, "timeout")
            gate.set()
            score(stable, 5)
            stable.wait_copies(6, "answered")
            assert stable.copies("unreachable") == stable.copies("not_ready") == stable.copies("dropped") == 0
    finally:
        gate.set()


def test_shadow_errors_are_counted_by_outcome(tmp_path: Path) -> None:
    app, _ = shadow_app()
    # A shadow refusing the stable's credential answers 401: an http_error, never a user failure.
    app.extensions["mlrollout"].keys = ApiKeys((b"other-key",))
    with serve(app) as shadow_url, stable_server(tmp_path, shadow_url, keys=ApiKeys((b"k1",))) as stable:
        score(stable, 3, Authorization="Bearer k1")
        stable.wait_for(
            "3 errors", lambda: stable.count("mlrollout_shadow_requests_total", outcome="http_error") == 3
        )


def test_the_stable_credential_is_sent_with_copies(tmp_path: Path) -> None:
    app, _ = shadow_app()
    app.extensions["mlrollout"].keys = ApiKeys((b"k1",))
    with serve(app) as shadow_url, stable_server(tmp_path, shadow_url, keys=ApiKeys((b"k1",))) as stable:
        score(stable, 3, Authorization="Bearer k1")
        stable.wait_for(
            "3 answers", lambda: stable.count("mlrollout_shadow_requests_total", outcome="answered") == 3
        )


def test_sampling_follows_percent(tmp_path: Path) -> None:
    app, _ = shadow_app()
    with serve(app) as shadow_url, stable_server(tmp_path, shadow_url, percent=25) as stable:
        score(stable, 400)

        def copies() -> float:
            return sum(
                stable.count("mlrollout_shadow_requests_total", outcome=o) for o in ("answered", "dropped")
            )

        time.sleep(0.5)
        stable.wait_for(
            "the queue to drain",
            lambda: stable.count("mlrollout_shadow_requests_total", outcome="answered") == copies(),
        )
        # Binomial(400, 0.25): mean 100, sd 8.7; [50, 150] is more than 5 sd either side.
        assert 50 <= copies() <= 150


def test_a_pod_of_the_shadow_version_never_mirrors_to_itself(tmp_path: Path) -> None:
    path = tmp_path / "shadow.json"
    path.write_text(json.dumps({"target": "http://127.0.0.1:9", "version": "2", "percent": 100}))
    app = create_app(
        model("2"), ServingConfig(shadow_config=str(path), log_requests=False), ApiKeys(), CollectorRegistry()
    )
    mirror = app.extensions["mlrollout"].service.shadow
    assert mirror is not None
    assert mirror.settings is None


def test_the_sample_is_shared_by_every_worker_process(tmp_path: Path) -> None:
    directory = tmp_path / "shadow"
    here = DisagreementLog(str(directory), capacity=3)
    for i in range(5):  # capacity 3: the two oldest are gone
        here.add({"time": f"2026-01-01T00:00:0{i}.000Z", "requestId": f"a{i}", "row": 0})
    code = (
        "from mlrollout.serving.shadow import DisagreementLog\n"
        f"log = DisagreementLog({str(directory)!r}, capacity=3)\n"
        "log.add({'time': '2026-01-01T00:00:03.500Z', 'requestId': 'b0', 'row': 0})\n"
        "log.flush()\n"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True, timeout=60, env=os.environ.copy())
    assert [r["requestId"] for r in here.recent(10)] == ["a4", "b0", "a3"]
    assert len(list(directory.glob("disagreements-*.json"))) == 2


def test_the_sample_keeps_the_newest_files_of_recycled_workers(tmp_path: Path) -> None:
    directory = tmp_path / "shadow"
    directory.mkdir()
    for i in range(20):  # files of workers that are gone, oldest first
        f = directory / f"disagreements-{100000 + i}.json"
        f.write_text("[]")
        os.utime(f, (1_000_000 + i, 1_000_000 + i))
    log = DisagreementLog(str(directory), capacity=3)
    log.add({"time": "2026-01-01T00:00:00.000Z", "requestId": "r", "row": 0})
    log.flush()
    kept = sorted(p.name for p in directory.glob("disagreements-*.json"))
    assert len(kept) == 16
    assert f"disagreements-{os.getpid()}.json" in kept
    assert "disagreements-100000.json" not in kept

"""End-to-end harness: make a kwok cluster's serving Deployments real, and send them traffic.

kwok pods never run containers. `PodRunner` stands in for the kubelet of one ModelDeployment: for
every serving Deployment with replicas > 0 it runs one real `mlrollout-serve` (gunicorn) on a free
loopback port with the Deployment's container env (MLROLLOUT_MODEL_URI, MLROLLOUT_MODEL_VERSION...)
and MLROLLOUT_TRACK, restarts it when the pinned model URI changes, stops it when the Deployment is
scaled to 0 or deleted, and registers it as a Prometheus scrape target labelled the way
manifests/monitoring/prometheus-scrape-config.yaml relabels pods (namespace, pod, model_deployment
from mlrollout.io/model-deployment, track from mlrollout.io/track). The track is read from the pods,
which the operator relabels on promotion, so, as in a real cluster, a promoted canary keeps running
and only its target label changes.

`LoadGenerator` sends 1-row `/invocations` requests, split between the tracks by the canary weight
in the ModelDeployment's status (as a weighted router would), and posts the true label of each row to
`/feedback` so live F1 is measurable. Bounded in requests and seconds; loopback only.

Used by tests/e2e and by hack/demo.py (which puts tests/ and tests/e2e/ on sys.path).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from support.procs import LogSink, ManagedProcess, free_port
from support.prometheus import ScrapeTarget

LABEL_MD = "mlrollout.io/model-deployment"
LABEL_TRACK = "mlrollout.io/track"
LABEL_VERSION = "mlrollout.io/version"
SERVE = str(Path(sys.executable).parent / "mlrollout-serve")


# --------------------------------------------------------------------------- kubectl
class Kube:
    """kubectl with a given environment (KUBECONFIG)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))


# --------------------------------------------------------------------------- what should run (pure)
@dataclass(frozen=True)
class DesiredServer:
    """One serving process standing in for the pods of one Deployment."""

    deployment: str
    version: str
    track: str
    model_uri: str
    env: tuple[tuple[str, str], ...]


def desired_servers(
    deployments: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> dict[str, DesiredServer]:
    """Deployments with replicas > 0 -> the server each needs, keyed by Deployment name.

    The track is the one most of the Deployment's pods carry (the operator relabels pods on
    promotion), else the pod template's."""
    out: dict[str, DesiredServer] = {}
    for d in deployments:
        if int(d.get("spec", {}).get("replicas") or 0) <= 0:
            continue
        name = d["metadata"]["name"]
        template = d["spec"]["template"]
        selector = d["spec"].get("selector", {}).get("matchLabels", {})
        tracks = Counter(
            (p["metadata"].get("labels") or {}).get(LABEL_TRACK)
            for p in pods
            if _matches(p["metadata"].get("labels") or {}, selector)
            and not p["metadata"].get("deletionTimestamp")
        )
        tracks.pop(None, None)
        track = (
            tracks.most_common(1)[0][0]
            if tracks
            else template["metadata"]["labels"].get(LABEL_TRACK, "stable")
        )
        container = template["spec"]["containers"][0]
        env = tuple((e["name"], str(e["value"])) for e in container.get("env") or [] if "value" in e)
        values = dict(env)
        out[name] = DesiredServer(
            deployment=name,
            version=values.get("MLROLLOUT_MODEL_VERSION") or d["metadata"]["labels"].get(LABEL_VERSION, ""),
            track=str(track),
            model_uri=values.get("MLROLLOUT_MODEL_URI", ""),
            env=env,
        )
    return out


def _matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pick_track(weight: int, rng: random.Random) -> str:
    """The track a weighted router sends one request to (weight = canary percent)."""
    return "canary" if rng.random() * 100 < weight else "stable"


# --------------------------------------------------------------------------- serving processes
@dataclass
class ServingProcess:
    want: DesiredServer
    port: int
    proc: ManagedProcess
    metrics_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        if not self.proc.alive:
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:
                # The version check guards against another process on a reused port.
                return bool(resp.status == 200) and resp.headers.get("X-Model-Version") == self.want.version
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.stop(timeout=10)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


class TargetSink(Protocol):
    """Where scrape targets go: support.prometheus.PrometheusServer, or the demo's Prometheus."""

    @property
    def alive(self) -> bool: ...

    def set_targets(self, scrape_targets: Sequence[ScrapeTarget]) -> None: ...


class TargetBoard:
    """The scrape targets of every runner sharing one Prometheus (set_targets replaces them all)."""

    def __init__(self, prometheus: TargetSink) -> None:
        self.prometheus = prometheus
        self._by_owner: dict[str, list[ScrapeTarget]] = {}
        self._lock = threading.Lock()

    def publish(self, owner: str, targets: list[ScrapeTarget]) -> None:
        with self._lock:
            if self._by_owner.get(owner) == targets:
                return
            self._by_owner[owner] = targets
            if self.prometheus.alive:
                self.prometheus.set_targets([t for ts in self._by_owner.values() for t in ts])


class PodRunner:
    """Runs the serving processes of one ModelDeployment as its Deployments ask (see module doc)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        md: str,
        board: TargetBoard,
        logs: LogSink,
        *,
        extra_env: Mapping[str, str] | None = None,
        poll_seconds: float = 0.5,
        max_seconds: float = 1800.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.md = md
        self.board = board
        self.logs = logs
        self.extra_env = dict(extra_env or {})
        self.poll_seconds = poll_seconds
        self.max_seconds = max_seconds
        self.servers: dict[str, ServingProcess] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one reconcile
    def sync(self) -> None:
        selector = f"{LABEL_MD}={self.md}"
        deployments = self.kube.json("get", "deployments", "-n", self.namespace, "-l", selector)["items"]
        pods = self.kube.json("get", "pods", "-n", self.namespace, "-l", selector)["items"]
        wanted = desired_servers(deployments, pods)
        with self._lock:
            if self._stop.is_set():  # a sync that outlived stop() must not start servers again
                return
            for name in [
                n
                for n, s in self.servers.items()
                if n not in wanted or s.want.model_uri != wanted[n].model_uri
            ]:
                self.servers.pop(name).stop()
            for name, want in wanted.items():
                running = self.servers.get(name)
                if running is None or not running.proc.alive:
                    if running is not None:
                        self.errors.append(f"{name} exited with {running.proc.proc.returncode}; restarted")
                        running.stop()
                    self.servers[name] = self._start(want)
                else:
                    running.want = want  # a track change only relabels the target, as on a pod
            targets = [
                ScrapeTarget(
                    f"127.0.0.1:{s.port}",
                    {
                        "namespace": self.namespace,
                        "pod": f"{name}-local",
                        "model_deployment": self.md,
                        "track": s.want.track,
                    },
                )
                for name, s in sorted(self.servers.items())
            ]
        self.board.publish(f"{self.namespace}/{self.md}", targets)

    def _start(self, want: DesiredServer) -> ServingProcess:
        port = free_port()
        metrics_dir = Path(tempfile.mkdtemp(prefix=f"mlrollout-metrics-{want.deployment}-"))
        env = {
            **os.environ,
            **dict(want.env),
            **self.extra_env,
            "MLROLLOUT_TRACK": want.track,
            "MLROLLOUT_BIND": f"127.0.0.1:{port}",
            "MLROLLOUT_WORKERS": "1",
            "MLROLLOUT_THREADS": "4",
            "MLROLLOUT_LOG_REQUESTS": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),  # one per server: counts must not mix
        }
        env.pop("MLROLLOUT_PORT", None)
        # The URI on the command line too, so the log's first line says what this server loads.
        argv = [SERVE, "--model-uri", want.model_uri]
        proc = ManagedProcess.start(
            f"serve-{self.namespace}-{want.deployment}", argv, env=env, logs=self.logs
        )
        return ServingProcess(want=want, port=port, proc=proc, metrics_dir=metrics_dir)

    # ---- background loop
    def start(self) -> PodRunner:
        self._thread = threading.Thread(target=self._loop, name=f"pod-runner-{self.md}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.sync()
            except (RuntimeError, OSError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
                self.errors.append(str(exc))
            self._stop.wait(self.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for server in self.servers.values():
                server.stop()
            self.servers.clear()
        self.board.publish(f"{self.namespace}/{self.md}", [])

    # ---- queries
    def ready_servers(self, track: str) -> list[ServingProcess]:
        with self._lock:
            candidates = [s for s in self.servers.values() if s.want.track == track]
        return [s for s in candidates if s.ready()]

    def wait_ready(self, tracks: Sequence[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.ready_servers(t) for t in tracks):
                return
            time.sleep(0.3)
        with self._lock:
            state = {n: (s.want.track, s.proc.alive) for n, s in self.servers.items()}
        raise TimeoutError(
            f"no ready server for all of {list(tracks)} within {timeout:.0f}s: {state}; "
            f"errors {self.errors[-3:]}"
        )


# --------------------------------------------------------------------------- load
@dataclass
class LoadStats:
    sent: Counter[tuple[str, int]] = field(default_factory=Counter)  # (track, HTTP status)
    feedback: Counter[str] = field(default_factory=Counter)  # track that predicted -> labels accepted
    feedback_elsewhere: int = 0  # labels accepted by another server than the one that predicted
    unreachable: int = 0

    def total(self, track: str) -> int:
        return sum(n for (t, _), n in self.sent.items() if t == track)

    def errors(self, track: str) -> int:
        return sum(n for (t, s), n in self.sent.items() if t == track and s >= 500)


class LoadGenerator:
    """Weighted 1-row traffic with ground-truth feedback (see module doc).

    `rows` are request rows and `labels` their true classes; the weight is re-read from the
    ModelDeployment status every `weight_refresh_seconds`."""

    def __init__(
        self,
        runner: PodRunner,
        rows: Sequence[Mapping[str, float]],
        labels: Sequence[int],
        *,
        rate_per_second: float = 20.0,
        max_requests: int = 20000,
        max_seconds: float = 600.0,
        feedback: bool = True,
        seed: int = 0,
        weight_refresh_seconds: float = 0.5,
    ) -> None:
        if len(rows) != len(labels) or not rows:
            raise ValueError("rows and labels must be non-empty and of the same length")
        self.runner = runner
        self.rows = list(rows)
        self.labels = list(labels)
        self.rate = rate_per_second
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.feedback = feedback
        self.rng = random.Random(seed)
        self.weight_refresh_seconds = weight_refresh_seconds
        self.stats = LoadStats()
        self.weight = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=self._loop, name=f"load-{self.runner.md}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> LoadStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.stats

    def _refresh_weight(self) -> None:
        status = (
            self.runner.kube.json("get", "md", self.runner.md, "-n", self.runner.namespace).get("status")
            or {}
        )
        self.weight = int(status.get("weight") or 0) if status.get("canary") else 0

    def _loop(self) -> None:
        start = time.monotonic()
        next_weight = next_send = start
        gap = 1.0 / self.rate
        for i in range(self.max_requests):
            now = time.monotonic()
            if self._stop.is_set() or now - start > self.max_seconds:
                return
            if now >= next_weight:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired, ValueError):
                    self._refresh_weight()
                next_weight = now + self.weight_refresh_seconds
            self.send_one(i % len(self.rows))
            # A steady rate: after a stall (a slow kubectl, a busy machine) go on, never burst to catch up.
            next_send = max(next_send + gap, time.monotonic())
            self._stop.wait(max(0.0, next_send - time.monotonic()))

    def send_one(self, index: int) -> None:
        track = pick_track(self.weight, self.rng)
        servers = self.runner.ready_servers(track) or self.runner.ready_servers(
            "stable" if track == "canary" else "canary"
        )
        if not servers:
            self.stats.unreachable += 1
            return
        server = self.rng.choice(servers)
        body = json.dumps({"dataframe_records": [self.rows[index]]}).encode()
        status, headers = _post(f"{server.url}/invocations", body)
        if status == 0:
            self.stats.unreachable += 1
            return
        self.stats.sent[(server.want.track, status)] += 1
        token = headers.get("X-Prediction-Token")
        if self.feedback and status == 200 and token:
            # Through "the Service": the label goes to any ready pod of either track, as one Service
            # selecting both tracks would send it; the token says which version predicted.
            anyone = self.runner.ready_servers("stable") + self.runner.ready_servers("canary")
            target = self.rng.choice(anyone) if anyone else server
            label = json.dumps({"token": token, "labels": [self.labels[index]]}).encode()
            if _post(f"{target.url}/feedback", label)[0] == 200:
                self.stats.feedback[server.want.track] += 1
                self.stats.feedback_elsewhere += target is not server


def _post(url: str, body: bytes) -> tuple[int, Mapping[str, str]]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            resp.read()
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, dict(exc.headers)
    except OSError:
        return 0, {}


def dataset_rows(
    dataset: str = "breast_cancer", limit: int = 200
) -> tuple[list[dict[str, float]], list[int]]:
    """Rows and true labels from a data set that ships with scikit-learn (same column names as
    support.mlflow_models uses when training)."""
    from support.mlflow_models import load_dataset

    x, y, _ = load_dataset(dataset)  # type: ignore[arg-type]
    order = x.sample(frac=1.0, random_state=0).index[:limit]  # both classes, not the file order
    x, y = x.loc[order], y.loc[order]
    return [{k: float(v) for k, v in r.items()} for r in x.to_dict(orient="records")], [int(v) for v in y]

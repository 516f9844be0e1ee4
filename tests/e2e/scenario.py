"""One ModelDeployment under test, end to end: its manifest, its pod runner and load, and waits.

Shared by the e2e tests and hack/demo.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from harness import Kube, LoadGenerator, PodRunner, TargetBoard
from support.ci import unavailable
from support.mlflow_models import ModelVersionInfo
from support.procs import LogSink
from support.prometheus import PrometheusServer, PrometheusUnavailable

T = TypeVar("T")
MODEL = "e2e-churn"
IMAGE = "mlrollout/serving:e2e"  # kwok never runs it: the pod runner runs the server

# Error rate and live F1 are what the scenarios break; latency keeps a loose bound so a busy
# 2-core machine does not fail a good canary.
DEFAULT_METRICS: tuple[Mapping[str, Any], ...] = (
    {"name": "errorRate", "max": 0.05},
    {"name": "liveF1", "min": 0.8, "maxRegression": 0.1},
    {"name": "latencyP99Ms", "max": 2000},
)
ANALYSIS_STEPS: tuple[Mapping[str, Any], ...] = ({"setWeight": 50}, {"analysis": {}}, {"setWeight": 100})


@dataclass(frozen=True)
class E2eModels:
    good: ModelVersionInfo  # first stable
    better: ModelVersionInfo  # a good canary
    poor: ModelVersionInfo  # trained on shuffled labels: passes a low gate, poor live F1
    broken: str  # version whose serving answers 500 to every scoring call


def start_prometheus(component_logs: Any, name: str) -> PrometheusServer:
    prom = PrometheusServer(scrape_interval_seconds=1, name=name)
    try:
        prom.start([], component_logs.path(name))
    except PrometheusUnavailable as exc:
        unavailable(str(exc))
    return prom


def manifest(
    name: str,
    model: str,
    version: str,
    prometheus_url: str,
    *,
    gate_threshold: float = 0.05,
    replicas: int = 2,
    steps: Sequence[Mapping[str, Any]] = ANALYSIS_STEPS,
    metrics: Sequence[Mapping[str, Any]] = DEFAULT_METRICS,
    interval: str = "3s",
    window: str = "10s",
    min_samples: int = 15,
    failure_limit: int = 1,
    env: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """A ModelDeployment with fast analysis (seconds, not minutes) for tests and the demo."""
    return {
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model, "version": version},
            # Low on purpose: the poor version must reach serving so live analysis can catch it.
            "gate": {"metric": "f1_score", "threshold": gate_threshold},
            "serving": {"image": IMAGE, "replicas": replicas, "env": [dict(e) for e in env]},
            "rollout": {
                "steps": [dict(s) for s in steps],
                "analysis": {
                    "interval": interval,
                    "window": window,
                    "minSamples": min_samples,
                    "failureLimit": failure_limit,
                    "prometheus": {"address": prometheus_url, "timeoutSeconds": 2},
                    "metrics": [dict(m) for m in metrics],
                },
                "progressDeadlineSeconds": 120,
            },
        },
    }


class Scenario:
    """A ModelDeployment in a namespace, with its pod runner and (optionally) load."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        board: TargetBoard,
        logs: LogSink,
        *,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.runner = PodRunner(kube, namespace, name, board, logs, extra_env=extra_env)
        self.load: LoadGenerator | None = None

    def __enter__(self) -> Scenario:
        self.runner.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.load is not None:
            self.load.stop()
        self.runner.stop()

    def apply(self, body: Mapping[str, Any]) -> None:
        self.kube.run("apply", "-n", self.namespace, "-f", "-", input=json.dumps(body))

    def set_version(self, version: str, env: Sequence[Mapping[str, str]] | None = None) -> None:
        spec: dict[str, Any] = {"model": {"version": version}}
        if env is not None:
            spec["serving"] = {"env": [dict(e) for e in env]}
        patch = json.dumps({"spec": spec})
        self.kube.run("patch", "md", self.name, "-n", self.namespace, "--type=merge", "-p", patch)

    def start_load(
        self, rows: Sequence[Mapping[str, float]], labels: Sequence[int], *, rate: float = 20.0
    ) -> LoadGenerator:
        self.load = LoadGenerator(self.runner, rows, labels, rate_per_second=rate, max_seconds=600).start()
        return self.load

    def status(self) -> dict[str, Any]:
        md = self.kube.json("get", "md", self.name, "-n", self.namespace)
        return dict(md.get("status") or {})

    def get_md(self) -> str:
        return self.kube.run("get", "md", self.name, "-n", self.namespace)

    def events(self) -> list[str]:
        out = self.kube.json(
            "get", "events", "-n", self.namespace, "--field-selector", f"involvedObject.name={self.name}"
        )
        items = sorted(out["items"], key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return [f"{e.get('reason')}: {e.get('message')}" for e in items]

    def wait(
        self,
        what: str,
        probe: Callable[[dict[str, Any]], T | None],
        timeout: float = 90.0,
        every: float = 0.3,
    ) -> T:
        """Poll the status until `probe(status)` is truthy; raise naming `what` and the last status."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            found = probe(status)
            if found:
                return found
            time.sleep(every)
        raise TimeoutError(
            f"{self.namespace}/{self.name}: {what} not reached in {timeout:.0f}s; status: "
            f"{json.dumps({k: status.get(k) for k in ('phase', 'message', 'weight', 'lastAnalysis')})}"
        )


def phase(want: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s.get("phase") == want


def stable_is(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: (s.get("stable") or {}).get("version") == version and not s.get("canary")


def canary_is(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: (s.get("canary") or {}).get("version") == version

"""A real Prometheus 3 (built from its Go module by hack/build-prometheus.sh) for tests: generated
config, loopback only, temp storage, 1s scrapes, targets given as file-based service discovery so they
can change live.

    prom = PrometheusServer()
    prom.start([ScrapeTarget("127.0.0.1:9101", {"namespace": "ns", "model_deployment": "md",
                                                 "track": "canary"})], logs_path)
    prom.wait_for_targets(1)
    ... prom.url ...
    prom.down(); prom.up()   # an outage: same port, data kept
    prom.stop()

Target labels stand in for what the install manifests' scrape config derives from pod labels
(namespace, mlrollout.io/model-deployment -> model_deployment, mlrollout.io/track -> track).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import ManagedProcess, free_port, tail


class PrometheusUnavailable(RuntimeError):
    """hack/build-prometheus.sh could not build Prometheus; the message carries its output.

    Callers hand it to support.ci.unavailable(), which fails the test under CI=true.
    """


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port serving /metrics
    labels: Mapping[str, str] = field(default_factory=dict)


def _built(tool: str) -> str:
    # hack/ is on sys.path (support.procs puts it there); imported here so that stays true.
    from prometheus_build import PrometheusBuildError, build_prometheus

    try:
        return str(build_prometheus() / tool)
    except PrometheusBuildError as exc:
        raise PrometheusUnavailable(str(exc)) from exc


def find_binary() -> str:
    """Path of the Prometheus 3 built by hack/build-prometheus.sh (building it on first use).

    No fallback: a system package's Prometheus is never used.
    """
    return _built("prometheus")


def find_promtool() -> str:
    """Path of the matching promtool (same build)."""
    return _built("promtool")


@dataclass
class _OneLog:
    log: Path

    def path(self, name: str) -> Path:
        return self.log


def api_get(base_url: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    """GET a Prometheus HTTP API path; its `data`, or RuntimeError when the status is not success."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{base_url}{path}{query}", timeout=5) as resp:
        body = json.loads(resp.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus {path}: {body}")
    return body["data"]


class PrometheusServer:
    def __init__(self, *, scrape_interval_seconds: int = 1, name: str = "prometheus") -> None:
        self.scrape_interval_seconds = scrape_interval_seconds
        self.name = name
        self.port = 0
        self._workdir: Path | None = None
        self._proc: ManagedProcess | None = None
        self._argv: list[str] = []
        self._logs: _OneLog | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("Prometheus is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive

    def start(self, scrape_targets: Sequence[ScrapeTarget], logs_path: Path, timeout: float = 30.0) -> None:
        binary = find_binary()
        self._workdir = Path(tempfile.mkdtemp(prefix="mlrollout-prometheus-"))
        self.set_targets(scrape_targets)
        interval = f"{self.scrape_interval_seconds}s"
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "scrape_configs": [
                {
                    "job_name": "mlrollout-serving",
                    "file_sd_configs": [{"files": [str(self._targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        config_file = self._workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.port = free_port()
        argv = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self._workdir / 'data'}",
            "--storage.tsdb.retention.time=2h",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
        ]
        self._argv, self._logs = argv, _OneLog(logs_path)
        self.up(timeout)

    def up(self, timeout: float = 30.0) -> None:
        """(Re)start the process on the same port, config and storage: data survives a down()/up()."""
        if self._logs is None or self._workdir is None:
            raise RuntimeError("Prometheus was never started")
        if self.alive:
            return
        self._proc = ManagedProcess.start(self.name, self._argv, logs=self._logs, cwd=self._workdir)
        self._proc.wait_http(f"{self.url}/-/ready", timeout=timeout)

    def down(self) -> None:
        """Stop the process but keep port, config and storage, to simulate an outage."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    @property
    def _targets_file(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("Prometheus is not started")
        return self._workdir / "targets.json"

    def set_targets(self, scrape_targets: Sequence[ScrapeTarget]) -> None:
        """Replace the scraped targets; Prometheus picks the file up within about a second."""
        groups = [{"targets": [t.address], "labels": dict(t.labels)} for t in scrape_targets]
        tmp = self._targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self._targets_file)  # atomic: Prometheus never reads half a file

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return api_get(self.url, path, params)

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", {"query": promql})
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Poll `check` every 0.5s; raise with the log tail when `timeout` passes."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError, RuntimeError, KeyError, ValueError) as exc:
                last_error = f" (last error: {exc})"
            time.sleep(0.5)
        log = self._proc.log_path if self._proc else None
        raise TimeoutError(
            f"Prometheus: {what} not true within {timeout:.0f}s{last_error}\n" + (tail(log) if log else "")
        )

    def wait_for_targets(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` targets are up (scraped successfully at least once)."""

        def up() -> bool:
            active = self.api("/api/v1/targets", {"state": "active"})["activeTargets"]
            return sum(1 for t in active if t.get("health") == "up") >= count

        self.wait_until(f"{count} targets up", up, timeout)

    def stop(self) -> None:
        self.down()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

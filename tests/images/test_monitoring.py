"""The shipped monitoring assets against real parts: a real Prometheus runs the scrape job from
manifests/monitoring/prometheus-scrape-config.yaml (its relabel rules unchanged) against the serving
container, and every Grafana dashboard query is evaluated by that Prometheus.

Kubernetes pod discovery is replaced by file discovery carrying the same `__meta_kubernetes_*`
labels a pod would have, so the relabeling that decides what is scraped and how it is labelled
is the shipped one."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from images.image_support import ROOT, ServingContainer, http
from support.ci import unavailable
from support.procs import LogSink, ManagedProcess, ProcessFailed, free_port

pytestmark = pytest.mark.image

MONITORING = ROOT / "manifests" / "monitoring"
POD = {"namespace": "shop", "pod": "churn-canary-7d9f-x2x", "model_deployment": "churn", "track": "canary"}


def pod_meta(port: int, *, app: str = "mlrollout-serving", scrape: str = "true") -> dict[str, str]:
    """The discovery labels Prometheus' Kubernetes pod role gives a serving pod."""
    return {
        "__meta_kubernetes_namespace": POD["namespace"],
        "__meta_kubernetes_pod_name": POD["pod"],
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
        "__meta_kubernetes_pod_label_mlrollout_io_model_deployment": POD["model_deployment"],
        "__meta_kubernetes_pod_label_mlrollout_io_track": POD["track"],
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
        "__meta_kubernetes_pod_annotation_prometheus_io_port": str(port),
        "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
    }


@dataclass(frozen=True)
class Prometheus:
    url: str

    def get(self, path: str, **params: str) -> Any:
        status, body = http("GET", f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        assert status == 200, body[:500]
        return json.loads(body)["data"]


@pytest.fixture(scope="module")
def prometheus(
    serving_container: ServingContainer, tmp_path_factory: pytest.TempPathFactory, component_logs: LogSink
) -> Iterator[Prometheus]:
    from support.prometheus import PrometheusUnavailable, find_binary

    try:
        binary = find_binary()
    except PrometheusUnavailable as exc:
        unavailable(str(exc))
    work = tmp_path_factory.mktemp("prometheus")
    (job,) = yaml.safe_load((MONITORING / "prometheus-scrape-config.yaml").read_text())
    assert "kubernetes_sd_configs" in job
    del job["kubernetes_sd_configs"]
    job["scrape_interval"] = "1s"
    job["file_sd_configs"] = [{"files": [str(work / "pods.json")], "refresh_interval": "1s"}]
    # The serving pod, plus two pods the job must leave alone (not ours; opted out).
    pods = [
        {"targets": ["127.0.0.1:1"], "labels": pod_meta(serving_container.port)},
        {"targets": ["127.0.0.2:1"], "labels": pod_meta(serving_container.port, app="someone-else")},
        {"targets": ["127.0.0.3:1"], "labels": pod_meta(serving_container.port, scrape="false")},
    ]
    (work / "pods.json").write_text(json.dumps(pods))
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [job]}
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = ManagedProcess.start(
        "prometheus-monitoring-test",
        [
            binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        logs=component_logs,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(f"{url}/-/ready", timeout=60)
    except ProcessFailed as exc:
        proc.stop()
        unavailable(f"Prometheus did not start: {exc}")
    try:
        yield Prometheus(url)
    finally:
        proc.stop()


def wait_for(what: str, probe: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def scraped(prometheus: Prometheus, serving_container: ServingContainer) -> Prometheus:
    """Traffic sent and scraped at least twice, so rate() has two points."""
    rows = serving_container.model.sample_rows
    for _ in range(3):
        status, body = http("POST", f"{serving_container.url}/invocations", {"dataframe_records": rows})
        assert status == 200, body[:300]

    def requests_seen() -> list[Any]:
        query = 'mlrollout_requests_total{endpoint="invocations", status="200"}'
        return [
            r for r in prometheus.get("/api/v1/query", query=query)["result"] if float(r["value"][1]) >= 3
        ]

    wait_for("the serving container's requests in Prometheus", requests_seen)
    time.sleep(3)  # a few more 1s scrapes, so range vectors hold several samples
    return prometheus


def test_scrape_job_keeps_only_annotated_serving_pods_and_labels_them(
    scraped: Prometheus, serving_container: ServingContainer
) -> None:
    targets = scraped.get("/api/v1/targets")
    (active,) = targets["activeTargets"]
    assert active["health"] == "up", active.get("lastError")
    # Address from the pod IP and the prometheus.io/port annotation, path from prometheus.io/path.
    assert active["scrapeUrl"] == f"http://127.0.0.1:{serving_container.port}/metrics"
    assert {k: active["labels"][k] for k in POD} == POD
    assert len(targets["droppedTargets"]) == 2


def test_scraped_series_carry_the_labels_canary_analysis_matches(scraped: Prometheus) -> None:
    query = 'mlrollout_requests_total{namespace="shop", model_deployment="churn", track="canary"}'
    result = scraped.get("/api/v1/query", query=query)["result"]
    assert result, "no series with the analysis labels"
    assert {r["metric"]["model_version"] for r in result} == {"1"}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def grafana_substitute(expr: str) -> str:
    return (
        expr.replace("$__rate_interval", "30s")
        .replace('"$namespace"', '"shop|.*"')
        .replace('"$model_deployment"', '"churn|.*"')
    )


def test_every_dashboard_query_evaluates(scraped: Prometheus) -> None:
    for title, expr in dashboard_queries():
        status, body = http(
            "GET", f"{scraped.url}/api/v1/query?{urllib.parse.urlencode({'query': grafana_substitute(expr)})}"
        )
        assert status == 200, f"{title}: {body[:300]!r}"


@pytest.mark.parametrize(
    "panel",
    ["Traffic share by track", "Serving versions", "Requests by status", "Latency p50 / p99 by track",
     "Stage latency p99", "Predictions by class", "Rows scored", "Loaded models"],
)  # fmt: skip
def test_serving_panels_show_the_container(scraped: Prometheus, panel: str) -> None:
    exprs = [expr for title, expr in dashboard_queries() if title == panel]
    assert exprs, f"no panel titled {panel!r}"
    results = [scraped.get("/api/v1/query", query=grafana_substitute(e))["result"] for e in exprs]
    assert any(results), f"{panel}: no data for a scraped serving container"

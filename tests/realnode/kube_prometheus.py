"""Prometheus discovering the serving pods through the Kubernetes API, with the scrape job that
manifests/monitoring ships (only the discovery credentials and the interval are set for the test):
a host process on the node's bridge address behind the Service prometheus.monitoring:9090, so the
installed operator's analysis queries it by DNS like it would in a cluster."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import real_node
import yaml
from support.procs import LogSink, ManagedProcess
from support.prometheus import api_get, find_binary

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_SCRAPE_CONFIG = ROOT / "manifests" / "monitoring" / "prometheus-scrape-config.yaml"
NAMESPACE = "monitoring"
SERVICE_PORT = 9090


def scrape_config(kubeconfig: Path, interval: str) -> dict[str, Any]:
    jobs = yaml.safe_load(SHIPPED_SCRAPE_CONFIG.read_text())
    for job in jobs:
        job["scrape_interval"] = interval
        job["scrape_timeout"] = interval
        for sd in job.get("kubernetes_sd_configs", []):
            sd["kubeconfig_file"] = str(kubeconfig)  # outside the cluster: the admin kubeconfig
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }


class KubePrometheus:
    def __init__(self, kubeconfig: Path, logs: LogSink, interval: str = "2s") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="mlrollout-kube-prometheus-"))
        config = self.workdir / "prometheus.yml"
        config.write_text(json.dumps(scrape_config(kubeconfig, interval), indent=2))
        self.port = real_node.free_port_on(real_node.NODE_IP)
        self.url = f"http://{real_node.NODE_IP}:{self.port}"
        self.in_cluster_url = f"http://prometheus.{NAMESPACE}:{SERVICE_PORT}"
        argv = [
            find_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=2h",
            f"--web.listen-address={real_node.NODE_IP}:{self.port}",
        ]
        self.proc = ManagedProcess.start("prometheus-kube-sd", argv, logs=logs, cwd=self.workdir)
        self.proc.wait_http(f"{self.url}/-/ready", timeout=60)

    def service_manifest(self) -> str:
        return real_node.host_service("prometheus", NAMESPACE, SERVICE_PORT, self.port)

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        return api_get(self.url, path, params)

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/targets", {"state": "active"})["activeTargets"])

    def stop(self) -> None:
        self.proc.stop()

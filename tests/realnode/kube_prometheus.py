"""Prometheus discovering the serving pods through the Kubernetes API (hack/real_stack.py, shared
with `make demo`), plus the API reads the tests make."""

from __future__ import annotations

from typing import Any

import real_stack
from real_stack import PROMETHEUS_NAMESPACE as NAMESPACE
from real_stack import PROMETHEUS_SERVICE_PORT as SERVICE_PORT
from real_stack import ROOT, SHIPPED_SCRAPE_CONFIG, scrape_config
from support.prometheus import api_get

__all__ = ["NAMESPACE", "ROOT", "SERVICE_PORT", "SHIPPED_SCRAPE_CONFIG", "KubePrometheus", "scrape_config"]


class KubePrometheus(real_stack.KubePrometheus):
    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        return api_get(self.url, path, params)

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/targets", {"state": "active"})["activeTargets"])

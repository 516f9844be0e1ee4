"""What the proxy-router tests share: a ModelDeployment behind a route that a real Traefik serves,
the load generator sending through that proxy, and the user's intents.

    md = ProxiedMd(node, ns, "gw", proxy_url, loadgen_image, rows)
    md.apply(proxied_model_deployment("gw", MODEL, "1", image, uri, 3, {"gatewayAPI": {...}}, steps))
    md.measure(800)                       # LoadResult, every request through the proxy, none failed
    intent(md, promote="step")
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from local_cluster import LocalCluster
from realpods import LoadJob, LoadResult, md_serving
from test_rollout import Md


def proxied_model_deployment(
    name: str, model: str, version: str, image: str, tracking_uri: str, router: dict[str, Any],
    steps: list[dict[str, Any]], stable_pods: int = 3,
) -> dict[str, Any]:  # fmt: skip
    """A ModelDeployment whose rollout goes through `router` (one trafficRouter entry)."""
    return {
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model, "version": version},
            "gate": {"metric": "f1_score", "threshold": 0.5},
            "serving": md_serving(image, tracking_uri, stable_pods),
            "rollout": {"trafficRouter": router, "steps": steps, "progressDeadlineSeconds": 300},
        },
    }


def header_steps(headers: dict[str, str]) -> list[dict[str, Any]]:
    return [{"setHeaderRoute": {"headers": [{"name": k, "value": v} for k, v in headers.items()]}}]


class ProxiedMd:
    """One ModelDeployment, measured by the load generator through the proxy at `proxy_url`."""

    label = "proxy"

    def __init__(
        self, node: LocalCluster, ns: str, name: str, proxy_url: str, loadgen: str, rows: Any
    ) -> None:
        self.node, self.ns, self.proxy_url, self.loadgen, self.rows = node, ns, proxy_url, loadgen, rows
        self.md = Md(node, ns, name)

    def apply(self, body: dict[str, Any] | str) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.node.kubectl("-n", self.ns, "apply", "-f", "-", input=text)

    def measure(self, requests: int, headers: dict[str, str] | None = None) -> LoadResult:
        extra = {"MLROLLOUT_LOAD_HEADERS": json.dumps(headers)} if headers else {}
        load = LoadJob(
            self.node, self.ns, self.loadgen, self.proxy_url, self.rows, users=4,
            max_requests=requests, seconds=180, new_connections=False, extra_env=extra,
        )  # fmt: skip
        result = load.result(timeout=300)
        print(f"[{self.label}] {requests} requests{' with ' + str(headers) if headers else ''}: "
              f"ok {result.ok}, failed {result.failed}, by version {result.by_version}")  # fmt: skip
        assert result.failed == 0, result.summary["failures"]
        return result

    def events(self) -> list[str]:
        out = self.node.kubectl(
            "-n", self.ns, "get", "events", "--field-selector", f"involvedObject.name={self.md.name}",
            "-o", "jsonpath={.items[*].reason}",
        ).stdout  # fmt: skip
        return out.split()


def intent(target: ProxiedMd, **what: Any) -> None:
    """What `kubectl mlrollout promote/abort` writes: a fresh intent id with `what`."""
    patch = {"spec": {"intent": {"id": uuid.uuid4().hex[:12], **what}}}
    target.md.kubectl("patch", "md", target.md.name, "--type=merge", "-p", json.dumps(patch))

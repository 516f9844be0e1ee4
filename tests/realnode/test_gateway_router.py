"""The gatewayAPI router through a real proxy: Traefik (built from its Go module) serves a Gateway
and the HTTPRoute the test writes as a user would; the installed operator sets only the weights and
its header rule in it; real serving pods answer; the in-cluster load generator measures which model
version answered each request that went through Traefik.

- exact weights 1, 5, 25, 50 with 1 canary pod beside 3 stable pods, matching the measured shares
  within a tolerance derived from the sample size; a header rule sends every matching request to the
  canary; after promotion the route has no header rule and 100% reaches the new version; the user's
  other rule, matches and filters are unchanged field by field.
- a route that no Gateway accepts (no parentRefs) holds the rollout with a condition naming the
  reason; once fixed the rollout goes on; an abort removes the header rule and all traffic is stable.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from local_cluster import LocalCluster
from proxied import ProxiedMd, header_steps, intent, proxied_model_deployment
from realpods import kubectl_json, share_tolerance, wait_until
from support.mlflow_models import train_and_register
from traefik_proxy import Traefik, route_manifest

pytestmark = pytest.mark.realnode
MODEL = "node-gateway"
STABLE_PODS = 3
HEADER = {"X-Canary": "always"}


@pytest.fixture(scope="module")
def versions(node_mlflow: Any) -> Any:
    return [train_and_register(node_mlflow.tracking_uri, MODEL, seed=s) for s in (0, 1)]


def user_rules(md: str) -> list[dict[str, Any]]:
    """What a user writes: the served rule (with a filter of theirs) and an unrelated rule."""
    return [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "filters": [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "X-Team", "value": "ml-platform"}]},
                }
            ],
            "backendRefs": [{"name": f"{md}-stable", "port": 8080}],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/all-tracks"}}],
            "backendRefs": [{"name": md, "port": 8080}],
        },
    ]


def model_deployment(
    name: str, version: str, image: str, tracking_uri: str, route: str, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    # Pods that leave the route stay 5 s once it is served: Traefik applies a route change after its
    # provider throttle (2 s); deleted at once they drew 503s.
    router = {"gatewayAPI": {"httpRoute": route, "canaryReplicas": 1, "scaleDownDelaySeconds": 5}}
    return proxied_model_deployment(name, MODEL, version, image, tracking_uri, router, steps, STABLE_PODS)


class Gateway(ProxiedMd):
    """One ModelDeployment behind the HTTPRoute `route`, measured through Traefik."""

    label = "gateway"

    def __init__(
        self, node: LocalCluster, ns: str, name: str, proxy: Traefik, loadgen: str, rows: Any
    ) -> None:
        super().__init__(node, ns, name, proxy.in_cluster_url, loadgen, rows)
        self.proxy = proxy
        self.route = f"{name}-route"

    def http_route(self) -> dict[str, Any]:
        return dict(kubectl_json(self.node, "-n", self.ns, "get", "httproute", self.route))


def header_rules(route: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in route["spec"]["rules"] if str(r.get("name", "")).startswith("mlrollout-header-")]


def test_exact_weights_and_a_header_rule_through_traefik_with_one_canary_pod(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any,
    traefik: Traefik, versions: Any,
) -> None:  # fmt: skip
    v1, v2 = versions
    rows = [{"features": r, "label": None} for r in v1.sample_rows]
    gw = Gateway(node, real_namespace, "gw", traefik, node_image("mlrollout-loadgen"), rows)
    written = user_rules(gw.md.name)
    gw.apply(route_manifest(gw.route, real_namespace, written, [traefik.parent_ref]))
    as_stored = copy.deepcopy(gw.http_route()["spec"]["rules"])  # with the API server's defaults
    steps = [
        *header_steps(HEADER),
        {"setWeight": 1}, {"pause": {}}, {"setWeight": 5}, {"pause": {}},
        {"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}},
    ]  # fmt: skip
    manifest = model_deployment(
        gw.md.name, v1.version, node_image("mlrollout-serving"), node_mlflow.in_cluster_uri, gw.route, steps
    )
    gw.apply(manifest)
    wait_until("v1 on every stable pod", lambda: gw.md.ready_by_version() == {v1.version: STABLE_PODS}, 300)
    wait_until("the route served", lambda: (gw.md.status().get("route") or {}).get("ready"), 120)

    manifest["spec"]["model"]["version"] = v2.version
    gw.apply(manifest)
    for index, weight, requests in ((2, 1, 3000), (4, 5, 1500), (6, 25, 800), (8, 50, 800)):
        status = gw.md.wait_step(index, weight, canary=v2.version)
        assert status["route"]["weight"] == weight, status["route"]
        assert gw.md.ready_by_version() == {v1.version: STABLE_PODS, v2.version: 1}
        result = gw.measure(requests)
        share = result.share(v2.version)
        print(
            f"\n[gateway] weight {weight}%: canary answered {share:.2%} of {result.ok} ({result.by_version})"
        )
        assert abs(share - weight / 100) <= share_tolerance(weight / 100, result.ok), (
            weight,
            result.by_version,
        )
        if index == 2:
            tagged = gw.measure(200, HEADER)
            print(f"[gateway] with {HEADER}: {tagged.by_version}")
            assert tagged.by_version == {v2.version: tagged.ok}
        intent(gw, promote="step")

    done = wait_until("Promoted", lambda: (s := gw.md.status()).get("phase") == "Promoted" and s, 300)
    assert done["stable"]["version"] == v2.version
    assert not done.get("headerRoute")
    wait_until("the route back to all-stable", lambda: (gw.md.status().get("route") or {}).get("ready"), 120)
    route = gw.http_route()
    assert header_rules(route) == []
    served, other = route["spec"]["rules"]
    assert {r["name"]: r["weight"] for r in served["backendRefs"]} == {"gw-stable": 100, "gw-canary": 0}
    for key in set(as_stored[0]) - {"backendRefs"}:
        assert served[key] == as_stored[0][key], key  # the user's matches and filters, unchanged
    assert other == as_stored[1]
    after = gw.measure(300)
    assert after.by_version == {v2.version: after.ok}
    assert "HeaderRouteSet" in gw.events()


def test_a_route_no_gateway_accepts_holds_the_rollout_and_an_abort_clears_the_header_rule(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any,
    traefik: Traefik, versions: Any,
) -> None:  # fmt: skip
    v1, v2 = versions
    rows = [{"features": r, "label": None} for r in v1.sample_rows]
    gw = Gateway(node, real_namespace, "held", traefik, node_image("mlrollout-loadgen"), rows)
    # No parentRefs: no Gateway takes the route, so nothing the operator writes into it serves.
    gw.apply(route_manifest(gw.route, real_namespace, user_rules(gw.md.name), []))
    steps = [
        *header_steps(HEADER),
        {"setWeight": 10},
        {"pause": {}},
    ]
    manifest = model_deployment(
        gw.md.name, v1.version, node_image("mlrollout-serving"), node_mlflow.in_cluster_uri, gw.route, steps
    )
    gw.apply(manifest)
    wait_until("v1 on every stable pod", lambda: gw.md.ready_by_version() == {v1.version: STABLE_PODS}, 300)
    manifest["spec"]["model"]["version"] = v2.version
    gw.apply(manifest)

    def held() -> dict[str, Any] | None:
        s = gw.md.status()
        routed = next((c for c in s.get("conditions", []) if c["type"] == "TrafficRouted"), {})
        not_accepted = "not accepted by any Gateway" in s.get("message", "")
        return s if not_accepted and routed.get("reason") == "RouteNotAccepted" else None

    status = wait_until("the rollout held on the unaccepted route", held, 300)
    assert status["phase"] == "Progressing", status
    assert status["currentStepIndex"] == 0, status
    assert gw.md.ready_by_version().get(v2.version) == 1  # the pods are there; only the route is not
    assert "RouteNotAccepted" in gw.events()

    fixed = gw.http_route()
    gw.node.kubectl(
        "-n", real_namespace, "patch", "httproute", gw.route, "--type=merge",
        "-p", json.dumps({"spec": {"parentRefs": [traefik.parent_ref]}}),
    )  # fmt: skip
    assert fixed["metadata"]["name"] == gw.route
    gw.md.wait_step(2, 10, canary=v2.version)
    assert len(header_rules(gw.http_route())) == 1
    tagged = gw.measure(200, HEADER)
    assert tagged.by_version == {v2.version: tagged.ok}

    intent(gw, abort=True)
    wait_until("RolledBack", lambda: gw.md.status().get("phase") == "RolledBack", 120)
    wait_until("the route back to all-stable", lambda: (gw.md.status().get("route") or {}).get("ready"), 120)
    route = gw.http_route()
    assert header_rules(route) == []
    weights = {r["name"]: r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]}
    assert weights == {"held-stable": 100, "held-canary": 0}
    after = gw.measure(300, HEADER)  # even with the header: the rule is gone
    assert after.by_version == {v1.version: after.ok}

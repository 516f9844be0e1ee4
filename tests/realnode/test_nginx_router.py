"""The nginx router through a real proxy: Traefik (built from its Go module) with its NGINX-annotation
provider serves the Ingress the test writes as a user would; the installed operator creates, rewrites
and deletes only its own canary Ingress beside it; real serving pods answer; the in-cluster load
generator measures which model version answered each request that went through Traefik.

- exact weights 1, 5, 25, 50 with 1 canary pod beside 3 stable pods, matching the measured shares
  within a tolerance derived from the sample size; the canary Ingress read back carries each weight;
  a header rule (canary-by-header + canary-by-header-value) sends every matching request to the
  canary; after promotion there is no canary Ingress, 100% reaches the new version and the user's
  Ingress is unchanged field by field;
- a missing Ingress, then one no controller serves (a class nobody implements), hold the rollout with
  a condition naming the reason and no canary Ingress is created; once fixed the rollout goes on;
  an abort deletes the canary Ingress and all traffic, with the header too, is stable.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from local_cluster import LocalCluster
from proxied import ProxiedMd, header_steps, intent, proxied_model_deployment
from realpods import share_tolerance, wait_until
from support.mlflow_models import train_and_register
from traefik_proxy import Traefik, ingress_manifest

pytestmark = pytest.mark.realnode
MODEL = "node-nginx"
STABLE_PODS = 3
HEADER = {"X-Canary": "always"}
CANARY_ANNOTATIONS = "nginx.ingress.kubernetes.io/canary"


@pytest.fixture(scope="module")
def versions(node_mlflow: Any) -> Any:
    return [train_and_register(node_mlflow.tracking_uri, MODEL, seed=s) for s in (0, 1)]


def user_paths(md: str) -> list[dict[str, Any]]:
    """What a user writes: the model's path, and one to the Service of both tracks."""
    return [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": f"{md}-stable", "port": {"number": 8080}}},
        },
        {
            "path": "/all-tracks",
            "pathType": "Prefix",
            "backend": {"service": {"name": md, "port": {"number": 8080}}},
        },
    ]


def model_deployment(
    name: str, version: str, image: str, tracking_uri: str, ingress: str, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    # Pods that leave the route stay 5 s once the Ingresses read back as wanted: Traefik applies a
    # change after its providers' throttle (2 s).
    router = {"nginx": {"ingress": ingress, "canaryReplicas": 1, "scaleDownDelaySeconds": 5}}
    return proxied_model_deployment(name, MODEL, version, image, tracking_uri, router, steps, STABLE_PODS)


class Nginx(ProxiedMd):
    """One ModelDeployment behind the Ingress `ingress`, measured through Traefik's NGINX provider."""

    label = "nginx"

    def __init__(
        self, node: LocalCluster, ns: str, name: str, proxy: Traefik, loadgen: str, rows: Any
    ) -> None:
        super().__init__(node, ns, name, proxy.nginx_in_cluster_url, loadgen, rows)
        self.proxy = proxy
        self.ingress = f"{name}-web"
        self.canary = f"{name}-canary"

    def get_ingress(self, name: str) -> dict[str, Any] | None:
        proc = self.node.kubectl("-n", self.ns, "get", "ingress", name, "-o", "json", check=False)
        if proc.returncode != 0:
            assert "NotFound" in proc.stderr, proc.stderr
            return None
        return dict(json.loads(proc.stdout))

    def canary_ingress(self) -> dict[str, Any] | None:
        return self.get_ingress(self.canary)

    def routed(self) -> dict[str, Any]:
        status = self.md.status()
        return next((c for c in status.get("conditions", []) if c["type"] == "TrafficRouted"), {})


def test_exact_weights_and_a_header_rule_through_traefiks_nginx_provider_with_one_canary_pod(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any,
    traefik: Traefik, versions: Any,
) -> None:  # fmt: skip
    v1, v2 = versions
    rows = [{"features": r, "label": None} for r in v1.sample_rows]
    nx = Nginx(node, real_namespace, "nx", traefik, node_image("mlrollout-loadgen"), rows)
    nx.apply(ingress_manifest(nx.ingress, real_namespace, traefik.ingress_class, user_paths(nx.md.name)))
    written = nx.get_ingress(nx.ingress)
    assert written is not None
    steps = [
        *header_steps(HEADER),
        {"setWeight": 1}, {"pause": {}}, {"setWeight": 5}, {"pause": {}},
        {"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}},
    ]  # fmt: skip
    manifest = model_deployment(
        nx.md.name, v1.version, node_image("mlrollout-serving"), node_mlflow.in_cluster_uri, nx.ingress, steps
    )
    nx.apply(manifest)
    wait_until("v1 on every stable pod", lambda: nx.md.ready_by_version() == {v1.version: STABLE_PODS}, 300)
    wait_until("the Ingress served", lambda: (nx.md.status().get("route") or {}).get("ready"), 120)
    assert nx.canary_ingress() is None  # no canary, no canary Ingress
    before = nx.get_ingress(nx.ingress)
    assert before is not None
    user_fields = copy.deepcopy(
        {"spec": before["spec"], "annotations": before["metadata"].get("annotations")}
    )

    manifest["spec"]["model"]["version"] = v2.version
    nx.apply(manifest)
    for index, weight, requests in ((2, 1, 3000), (4, 5, 1500), (6, 25, 800), (8, 50, 800)):
        status = nx.md.wait_step(index, weight, canary=v2.version)
        assert status["route"]["weight"] == weight, status["route"]
        assert status["route"]["kind"] == "Ingress", status["route"]
        canary = nx.canary_ingress()
        assert canary is not None
        ann = canary["metadata"]["annotations"]
        assert ann[CANARY_ANNOTATIONS] == "true"
        assert ann[f"{CANARY_ANNOTATIONS}-weight"] == str(weight)
        assert ann[f"{CANARY_ANNOTATIONS}-by-header"] == "X-Canary"
        assert ann[f"{CANARY_ANNOTATIONS}-by-header-value"] == "always"
        owners = canary["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"]) for o in owners] == [("ModelDeployment", nx.md.name)]
        assert canary["status"]["loadBalancer"]["ingress"], "Traefik did not take the canary Ingress"
        assert nx.md.ready_by_version() == {v1.version: STABLE_PODS, v2.version: 1}
        result = nx.measure(requests)
        share = result.share(v2.version)
        tolerance = share_tolerance(weight / 100, result.ok)
        print(
            f"\n[nginx] weight {weight}%: canary answered {share:.2%} of {result.ok} "
            f"(tolerance +-{tolerance:.2%}) {result.by_version}"
        )
        assert abs(share - weight / 100) <= tolerance, (weight, result.by_version)
        if index == 2:
            tagged = nx.measure(200, HEADER)
            assert tagged.by_version == {v2.version: tagged.ok}
        intent(nx, promote="step")

    done = wait_until("Promoted", lambda: (s := nx.md.status()).get("phase") == "Promoted" and s, 300)
    assert done["stable"]["version"] == v2.version
    assert not done.get("headerRoute")
    wait_until("no canary Ingress left", lambda: nx.canary_ingress() is None, 120)
    wait_until("the route back to all-stable", lambda: (nx.md.status().get("route") or {}).get("ready"), 120)
    after_ingress = nx.get_ingress(nx.ingress)
    assert after_ingress is not None
    assert after_ingress["spec"] == user_fields["spec"]  # the user's Ingress, unchanged
    assert after_ingress["metadata"].get("annotations") == user_fields["annotations"]
    after = nx.measure(300)
    assert after.by_version == {v2.version: after.ok}
    tagged = nx.measure(200, HEADER)  # the header rule went with the canary Ingress
    assert tagged.by_version == {v2.version: tagged.ok}
    assert "HeaderRouteSet" in nx.events()


def test_a_missing_or_unserved_ingress_holds_the_rollout_and_an_abort_removes_the_canary_ingress(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any,
    traefik: Traefik, versions: Any,
) -> None:  # fmt: skip
    v1, v2 = versions
    rows = [{"features": r, "label": None} for r in v1.sample_rows]
    nx = Nginx(node, real_namespace, "nxheld", traefik, node_image("mlrollout-loadgen"), rows)
    steps = [*header_steps(HEADER), {"setWeight": 10}, {"pause": {}}]
    manifest = model_deployment(
        nx.md.name, v1.version, node_image("mlrollout-serving"), node_mlflow.in_cluster_uri, nx.ingress, steps
    )
    nx.apply(manifest)
    wait_until("v1 on every stable pod", lambda: nx.md.ready_by_version() == {v1.version: STABLE_PODS}, 300)
    manifest["spec"]["model"]["version"] = v2.version
    nx.apply(manifest)

    def held(reason: str, says: str) -> dict[str, Any] | None:
        """The step waits on the Ingress (once the canary pod is Ready the step says so) with `reason`."""
        s = nx.md.status()
        waiting = s.get("phase") == "Progressing" and says in s.get("message", "")
        return s if waiting and nx.routed().get("reason") == reason else None

    missing = f"Ingress {nx.ingress} does not exist"
    status = wait_until("the rollout held: no Ingress", lambda: held("IngressNotFound", missing), 300)
    assert status["currentStepIndex"] == 0, status
    wait_until("the canary pod Ready", lambda: nx.md.ready_by_version().get(v2.version) == 1, 300)
    assert nx.canary_ingress() is None

    # An Ingress of a class no controller implements: nobody publishes an address for it.
    nx.apply(ingress_manifest(nx.ingress, real_namespace, "unserved", user_paths(nx.md.name)))
    unserved = f"Ingress {nx.ingress} is not served by any Ingress controller"
    status = wait_until("the rollout held: not served", lambda: held("IngressNotServed", unserved), 120)
    assert status["currentStepIndex"] == 0, status
    assert nx.canary_ingress() is None, "a canary Ingress beside an Ingress nobody serves"
    assert {"IngressNotFound", "IngressNotServed"} <= set(nx.events())

    nx.node.kubectl(
        "-n", real_namespace, "patch", "ingress", nx.ingress, "--type=merge",
        "-p", json.dumps({"spec": {"ingressClassName": traefik.ingress_class}}),
    )  # fmt: skip
    nx.md.wait_step(2, 10, canary=v2.version)
    canary = nx.canary_ingress()
    assert canary is not None
    assert canary["metadata"]["annotations"][f"{CANARY_ANNOTATIONS}-weight"] == "10"
    tagged = nx.measure(200, HEADER)
    assert tagged.by_version == {v2.version: tagged.ok}

    intent(nx, abort=True)
    wait_until("RolledBack", lambda: nx.md.status().get("phase") == "RolledBack", 120)
    wait_until("no canary Ingress left", lambda: nx.canary_ingress() is None, 120)
    wait_until("the route back to all-stable", lambda: (nx.md.status().get("route") or {}).get("ready"), 120)
    assert not nx.md.status().get("headerRoute")
    after = nx.measure(300, HEADER)  # even with the header: the rule is gone
    assert after.by_version == {v1.version: after.ok}
    plain = nx.measure(300)
    assert plain.by_version == {v1.version: plain.ok}

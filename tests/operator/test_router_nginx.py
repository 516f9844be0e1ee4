"""The nginx router's pure parts (the canary Ingress it wants, what it reads back, when it holds) and
the planner driving it through whole rollouts: the canary Ingress follows the steps' weight and header
rule, a primary Ingress that is missing or that no controller serves holds the rollout with the
reason, and promotion and abort leave no canary Ingress behind."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlrollout.operator import children
from mlrollout.operator.model import HeaderMatch, IngressObs, IngressPairObs
from mlrollout.operator.planner import Plan
from mlrollout.operator.routers import IngressWrite
from mlrollout.operator.routers.nginx import (
    BY_HEADER,
    CANARY,
    CLASS_ANNOTATION,
    HEADER_PATTERN,
    HEADER_VALUE,
    WEIGHT,
    WEIGHT_TOTAL,
    NginxRouter,
    applied_weight,
    canary_rules,
    desired_canary,
    ingress_obs,
    route_verdict,
)
from mlrollout.operator.spec import InvalidSpec, NginxRoute

sys.path.insert(0, str(Path(__file__).parent))
from test_planner import Sim, make_spec  # the planner's in-memory cluster

ROOT = Path(__file__).resolve().parents[2]
STABLE, CANARY_SVC = "churn-stable", "churn-canary"


def path(service: str, value: str = "/", port: Any = None) -> dict[str, Any]:
    return {
        "path": value,
        "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": port or {"number": 8080}}},
    }


PRIMARY_RULES = (
    {"host": "churn.example.com", "http": {"paths": [path(STABLE), path("docs", "/docs")]}},
    {"host": "other.example.com", "http": {"paths": [path("other")]}},
    {"http": {"paths": [path(STABLE, "/v2", {"name": "http"})]}},
)


def primary(
    *,
    rules: tuple[dict[str, Any], ...] = PRIMARY_RULES,
    addresses: tuple[str, ...] = ("10.0.0.1",),
    **kw: Any,
) -> IngressObs:
    return IngressObs(
        "web", True, "7", kw.pop("ingress_class", "nginx"), kw.pop("annotations", {}), rules, addresses
    )


def absent(name: str = "churn-canary") -> IngressObs:
    return IngressObs(name, exists=False)


def served_canary(manifest: dict[str, Any], owner: str = "churn") -> IngressObs:
    """The canary Ingress as the API server returns it after the apply, taken by the controller."""
    spec = manifest["spec"]
    return IngressObs(
        manifest["metadata"]["name"],
        True,
        "9",
        spec.get("ingressClassName"),
        {**manifest["metadata"]["annotations"], "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        tuple(spec["rules"]),
        ("10.0.0.1",),
        owner,
    )


HEADER = (HeaderMatch("X-Canary", "always"),)


def test_the_canary_ingress_copies_only_the_paths_to_the_stable_service_pointed_at_the_canary() -> None:
    rules = canary_rules(PRIMARY_RULES, STABLE, CANARY_SVC)
    assert rules == [
        {"host": "churn.example.com", "http": {"paths": [path(CANARY_SVC)]}},
        {"http": {"paths": [path(CANARY_SVC, "/v2", {"name": "http"})]}},
    ]
    assert PRIMARY_RULES[0]["http"]["paths"][0]["backend"]["service"]["name"] == STABLE  # not mutated


@pytest.mark.parametrize(
    ("weight", "headers", "want"),
    [
        (0, (), None),
        (1, (), {CANARY: "true", WEIGHT: "1", WEIGHT_TOTAL: "100"}),
        (50, (), {CANARY: "true", WEIGHT: "50", WEIGHT_TOTAL: "100"}),
        (
            0,
            HEADER,
            {CANARY: "true", WEIGHT: "0", WEIGHT_TOTAL: "100", BY_HEADER: "X-Canary", HEADER_VALUE: "always"},
        ),
        (
            25,
            (HeaderMatch("X-Team", "ml-.*", "RegularExpression"),),
            {CANARY: "true", WEIGHT: "25", WEIGHT_TOTAL: "100", BY_HEADER: "X-Team", HEADER_PATTERN: "ml-.*"},
        ),
    ],
)
def test_canary_annotations_per_weight_and_header(
    weight: int, headers: tuple[HeaderMatch, ...], want: dict[str, str] | None
) -> None:
    manifest = desired_canary(primary(), "churn", weight, headers)
    if want is None:
        assert manifest is None
        return
    assert manifest is not None
    assert manifest["metadata"] == {"name": "churn-canary", "annotations": want}
    assert manifest["spec"]["ingressClassName"] == "nginx"
    assert applied_weight(served_canary(manifest)) == weight


def test_the_class_annotation_is_copied_for_controllers_that_select_by_it() -> None:
    old_style = primary(ingress_class=None, annotations={CLASS_ANNOTATION: "nginx", "x/other": "1"})
    manifest = desired_canary(old_style, "churn", 5, ())
    assert manifest is not None
    assert manifest["metadata"]["annotations"][CLASS_ANNOTATION] == "nginx"
    assert "x/other" not in manifest["metadata"]["annotations"]
    assert "ingressClassName" not in manifest["spec"]


def pair(p: IngressObs | None = None, c: IngressObs | None = None) -> IngressPairObs:
    return IngressPairObs(p or primary(), c or absent())


@pytest.mark.parametrize(
    ("observed", "reason"),
    [
        (IngressPairObs(IngressObs("web", False), absent()), "IngressNotFound"),
        (pair(primary(rules=(PRIMARY_RULES[1],))), "IngressHasNoStableBackend"),
        (pair(primary(addresses=())), "IngressNotServed"),
        (
            pair(c=IngressObs("churn-canary", True, "1", "nginx", {}, (), (), owner=None)),
            "CanaryIngressConflict",
        ),
        (pair(), "RouteUpdating"),  # not written yet
    ],
)
def test_a_primary_that_cannot_carry_a_canary_holds_with_the_reason(
    observed: IngressPairObs, reason: str
) -> None:
    verdict = route_verdict(observed, "web", "churn", 25, ())
    assert (verdict.ok, verdict.reason) == (False, reason)
    assert verdict.message


def test_never_written_through_a_primary_no_controller_serves_nor_over_an_ingress_not_ours() -> None:
    router = NginxRouter("web", "churn")
    assert router.route_write(pair(primary(addresses=())), 25, ()) is None
    assert router.route_write(IngressPairObs(IngressObs("web", False), absent()), 25, HEADER) is None
    foreign = IngressObs("churn-canary", True, "1", "nginx", {CANARY: "true"}, (), (), owner="someone-else")
    assert router.route_write(pair(c=foreign), 0, ()) is None
    assert router.route_verdict(pair(c=foreign), 0, ()).reason == "CanaryIngressConflict"


def test_write_read_back_and_serve_then_removal() -> None:
    router = NginxRouter("web", "churn")
    write = router.route_write(pair(), 5, HEADER)
    assert isinstance(write, IngressWrite)
    assert write.manifest is not None
    written = served_canary(write.manifest)
    not_taken = replace(written, addresses=())
    assert router.route_verdict(pair(c=not_taken), 5, HEADER).reason == "RouteUpdating"  # no address yet
    assert router.route_write(pair(c=written), 5, HEADER) is None  # idempotent
    verdict = router.route_verdict(pair(c=written), 5, HEADER)
    assert (verdict.ok, verdict.weight) == (True, 5)
    # A user's edit to a managed annotation is taken back; other annotations are left alone.
    edited = replace(written, annotations={**written.annotations, WEIGHT: "90"})
    assert router.route_verdict(pair(c=edited), 5, HEADER).weight == 90
    assert isinstance(router.route_write(pair(c=edited), 5, HEADER), IngressWrite)
    # No canary any more: the canary Ingress is deleted (also while the primary is broken).
    assert router.route_write(pair(c=written), 0, ()) == IngressWrite("churn-canary", None)
    assert router.route_write(pair(primary(addresses=()), written), 0, ()) == IngressWrite(
        "churn-canary", None
    )
    assert router.route_verdict(pair(c=written), 0, ()).reason == "RouteUpdating"
    assert router.route_verdict(pair(), 0, ()).ok


def test_ingress_obs_reads_owner_class_addresses() -> None:
    obj = {
        "metadata": {
            "name": "churn-canary",
            "resourceVersion": "12",
            "annotations": {CANARY: "true", WEIGHT: "25"},
            "ownerReferences": [
                {"apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment", "name": "churn"}
            ],
        },
        "spec": {"ingressClassName": "nginx", "rules": [{"http": {"paths": [path(CANARY_SVC)]}}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}, {"hostname": "lb.example.com"}]}},
    }
    obs = ingress_obs(obj)
    assert (obs.owner, obs.ingress_class, obs.addresses) == ("churn", "nginx", ("10.0.0.1", "lb.example.com"))
    assert applied_weight(obs) == 25
    assert applied_weight(replace(obs, annotations={CANARY: "true", WEIGHT: "5", WEIGHT_TOTAL: "1000"})) == 0
    assert applied_weight(replace(obs, annotations={CANARY: "true", WEIGHT: "x"})) is None


def test_the_applier_manifest_is_owned_by_the_model_deployment() -> None:
    manifest = desired_canary(primary(), "churn", 5, ())
    assert manifest is not None
    md = {"metadata": {"name": "churn", "namespace": "ml", "uid": "u-1"}}
    full = children.canary_ingress(md, manifest)
    assert full["metadata"]["namespace"] == "ml"
    assert full["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert full["metadata"]["labels"][children.LABEL_MD] == "churn"
    assert full["metadata"]["annotations"] == manifest["metadata"]["annotations"]
    assert "namespace" not in manifest["metadata"]  # the router's manifest is untouched


# --------------------------------------------------------------------------- spec
def test_spec_parsing_and_refusals_name_the_field() -> None:
    router = make_spec(
        "1", rollout={"trafficRouter": {"nginx": {"ingress": "web", "canaryReplicas": 2}}}
    ).router
    assert router == NginxRoute("web", 2, 30)
    where = "spec.rollout.trafficRouter.nginx"
    for body, field in [
        ({}, f"{where}.ingress: required"),
        ({"ingress": "Not_A_Name"}, f"{where}.ingress"),
        ({"ingress": "web", "canaryReplicas": 0}, f"{where}.canaryReplicas"),
        ({"ingress": "web", "scaleDownDelaySeconds": -1}, f"{where}.scaleDownDelaySeconds"),
    ]:
        with pytest.raises(InvalidSpec, match=field.replace(".", r"\.")):
            make_spec("1", rollout={"trafficRouter": {"nginx": body}})
    with pytest.raises(InvalidSpec, match="supported: replicas, gatewayAPI, nginx"):
        make_spec("1", rollout={"trafficRouter": {"nginx": {"ingress": "web"}, "replicas": {}}})
    two = [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "2"}]
    with pytest.raises(
        InvalidSpec, match=r"steps\[0\]\.setHeaderRoute\.headers: the nginx router matches one"
    ):
        make_spec(
            "1",
            rollout={
                "trafficRouter": {"nginx": {"ingress": "web"}},
                "steps": [{"setHeaderRoute": {"headers": two}}, {"setWeight": 10}],
            },
        )


def test_the_example_parses_and_its_canary_ingress_pairs_with_the_example_ingress() -> None:
    md = [d for d in yaml.safe_load_all((ROOT / "examples/nginx/modeldeployment.yaml").read_text()) if d][-1]
    spec = make_spec("1", rollout=md["spec"]["rollout"])
    assert isinstance(spec.router, NginxRoute)
    ing = yaml.safe_load((ROOT / "examples/nginx/ingress.yaml").read_text())
    assert ing["metadata"]["name"] == spec.router.ingress
    obs = ingress_obs({**ing, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}})
    manifest = desired_canary(obs, md["metadata"]["name"], 1, ())
    assert manifest is not None
    rule = manifest["spec"]["rules"][0]
    assert rule["host"] == ing["spec"]["rules"][0]["host"]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "churn-canary"


# --------------------------------------------------------------------------- planner
@dataclass
class NginxSim(Sim):
    """The applier writes the canary Ingress; the controller takes it (an address) if `serves`."""

    serves: bool = True
    writes: int = 0

    def apply_route(self, p: Plan) -> None:
        if not isinstance(p.route, IngressWrite) or not isinstance(self.route, IngressPairObs):
            return
        self.writes += 1
        if p.route.manifest is None:
            self.route = replace(self.route, canary=absent())
            return
        canary = served_canary(dict(p.route.manifest))
        self.route = replace(self.route, canary=canary if self.serves else replace(canary, addresses=()))

    def canary_weight(self) -> int | None:
        assert isinstance(self.route, IngressPairObs)
        return applied_weight(self.route.canary) if self.route.canary.exists else None


ROUTER = {"nginx": {"ingress": "web", "canaryReplicas": 1}}
SERVING = {"image": "serve:1", "replicas": 3}


def nginx_sim(
    steps: list[dict[str, Any]], router: dict[str, Any] | None = None, **primary_kw: Any
) -> NginxSim:
    rollout = {"steps": steps, "trafficRouter": router or ROUTER}
    sim = NginxSim(make_spec("1", serving=SERVING, rollout=rollout))
    sim.route = IngressPairObs(primary(**primary_kw), absent())
    sim.run(3)
    assert sim.status.phase == "Promoted"
    sim.spec = make_spec("2", serving=SERVING, rollout=rollout)
    return sim


def with_intent(sim: NginxSim, steps: list[dict[str, Any]], **intent: Any) -> None:
    rollout = {"steps": steps, "trafficRouter": ROUTER}
    sim.spec = make_spec("2", serving=SERVING, rollout=rollout, intent={"id": f"i{len(sim.plans)}", **intent})


def test_weights_follow_the_steps_with_one_canary_pod_and_promotion_removes_the_canary_ingress() -> None:
    steps = [{"setWeight": 1}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    sim = nginx_sim(steps)
    assert sim.canary_weight() is None  # no canary: no canary Ingress
    sim.run(4)
    assert (sim.status.phase, sim.status.current_step_index, sim.canary_weight()) == ("Paused", 1, 1)
    assert sorted(sim.replicas().values()) == [1, 3]
    route = sim.status.route
    assert route is not None
    assert (route.kind, route.name, route.weight, route.ready) == ("Ingress", "web", 1, True)
    assert sim.status.condition("TrafficRouted").status == "True"  # type: ignore[union-attr]
    with_intent(sim, steps, promote="step")
    sim.run(3)
    assert (sim.status.current_step_index, sim.canary_weight()) == (3, 50)
    with_intent(sim, steps, promote="full")
    sim.run(40)
    assert sim.status.phase == "Promoted"
    assert sim.canary_weight() is None, "canary Ingress left behind after promotion"
    assert sim.status.route is not None
    assert sim.status.route.ready
    running = {d.version: d.replicas for d in sim.deployments.values() if d.replicas}
    assert running == {"2": 3}  # the old stable went once the delay had passed


def test_header_rule_then_abort_leaves_no_canary_ingress() -> None:
    steps = [
        {"setHeaderRoute": {"headers": [{"name": "X-Canary", "value": "always"}]}},
        {"setWeight": 5},
        {"pause": {}},
    ]
    sim = nginx_sim(steps)
    sim.run(5)
    assert sim.status.phase == "Paused"
    assert isinstance(sim.route, IngressPairObs)
    ann = sim.route.canary.annotations
    assert (ann[BY_HEADER], ann[HEADER_VALUE], ann[WEIGHT]) == ("X-Canary", "always", "5")
    with_intent(sim, steps, abort=True)
    sim.run(40)
    assert sim.status.phase == "RolledBack"
    assert not sim.route.canary.exists
    assert sim.status.header_route == ()
    assert "HeaderRouteCleared" in sim.events()


@pytest.mark.parametrize(
    ("primary_kw", "reason"),
    [({"addresses": ()}, "IngressNotServed"), ({"rules": (PRIMARY_RULES[1],)}, "IngressHasNoStableBackend")],
)
def test_a_primary_no_controller_serves_holds_the_rollout_and_nothing_shifts(
    primary_kw: dict[str, Any], reason: str
) -> None:
    steps = [{"setWeight": 25}, {"pause": {}}]
    rollout = {"steps": steps, "trafficRouter": ROUTER}
    sim = NginxSim(make_spec("1", serving=SERVING, rollout=rollout))
    sim.route = IngressPairObs(primary(**primary_kw), absent())
    sim.run(3)
    sim.spec = make_spec("2", serving=SERVING, rollout=rollout)
    sim.run(6)
    assert (sim.status.phase, sim.status.current_step_index) == ("Progressing", 0)
    cond = sim.status.condition("TrafficRouted")
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", reason)
    assert reason in sim.events()
    assert sim.writes == 0  # never a canary Ingress
    assert sim.canary_weight() is None
    sim.route = IngressPairObs(primary(), absent())  # the user fixes the Ingress
    sim.run(4)
    assert (sim.status.phase, sim.status.current_step_index, sim.canary_weight()) == ("Paused", 1, 25)


def test_a_canary_ingress_the_controller_does_not_take_holds_the_step() -> None:
    sim = nginx_sim([{"setWeight": 25}, {"pause": {}}])
    sim.serves = False
    sim.run(6)
    assert (sim.status.phase, sim.status.current_step_index, sim.canary_weight()) == ("Progressing", 0, 25)
    assert "has not taken canary Ingress churn-canary" in sim.status.message


@pytest.mark.parametrize("delay", [0, 30])
def test_an_aborted_canary_keeps_its_pods_for_the_delay_after_the_canary_ingress_is_gone(delay: int) -> None:
    router = {"nginx": {"ingress": "web", "canaryReplicas": 1, "scaleDownDelaySeconds": delay}}
    steps = [{"setWeight": 25}, {"pause": {}}]
    sim = nginx_sim(steps, router)
    sim.run(4)
    canary = next(n for n, d in sim.deployments.items() if d.version == "2")
    sim.spec = make_spec(
        "2",
        serving=SERVING,
        rollout={"steps": steps, "trafficRouter": router},
        intent={"id": "a", "abort": True},
    )
    sim.tick()  # the abort: canary Ingress deleted, not read back yet
    assert sim.canary_weight() is None
    assert sim.deployments[canary].replicas == 1
    sim.tick()  # read back absent: served from now on
    if delay == 0:
        assert canary not in sim.deployments or sim.deployments[canary].replicas == 0
        return
    assert sim.deployments[canary].replicas == 1
    sim.run(delay - 2)
    assert sim.deployments[canary].replicas == 1, "gone before the delay had passed"
    sim.run(3)
    assert canary not in sim.deployments or sim.deployments[canary].replicas == 0

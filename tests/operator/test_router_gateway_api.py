"""The gatewayAPI router's pure parts: the HTTPRoute rewrite (weights, header rules, the user's rules
and filters untouched), reading a route back, and canary pod counts independent of weight."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from mlrollout.operator.kube import route_obs
from mlrollout.operator.model import HeaderMatch, RouteObs, RouteParent
from mlrollout.operator.routers.gateway_api import (
    GatewayAPIRouter,
    applied_weight,
    canary_replicas,
    desired_rules,
    managed_rules,
    route_verdict,
)

STABLE, CANARY = "churn-stable", "churn-canary"
HEADER = (HeaderMatch("X-Canary", "always"),)

# What a user writes (as the API server returns it, defaults filled in): the served rule with a
# filter, a path match and a timeout, and a second rule the operator must never touch.
USER_RULES: list[dict[str, Any]] = [
    {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "filters": [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "X-Team", "value": "ml"}]},
            }
        ],
        "timeouts": {"request": "10s"},
        "backendRefs": [{"group": "", "kind": "Service", "name": STABLE, "port": 8080, "weight": 1}],
    },
    {
        "matches": [{"path": {"type": "PathPrefix", "value": "/legacy"}}],
        "backendRefs": [{"group": "", "kind": "Service", "name": "legacy", "port": 80, "weight": 1}],
    },
]


def weights(rule: dict[str, Any]) -> dict[str, int]:
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


@pytest.mark.parametrize("weight", [0, 1, 5, 25, 50, 100])
def test_weights_go_into_every_rule_that_serves_stable_and_nothing_else_changes(weight: int) -> None:
    before = copy.deepcopy(USER_RULES)
    rules = desired_rules(USER_RULES, STABLE, CANARY, weight)
    assert before == USER_RULES  # pure: the input is not modified
    assert len(rules) == 2
    served, legacy = rules
    assert weights(served) == {STABLE: 100 - weight, CANARY: weight}
    canary_ref = served["backendRefs"][1]
    assert canary_ref == {**USER_RULES[0]["backendRefs"][0], "name": CANARY, "weight": weight}
    # Field by field, everything the user wrote survives.
    for key in ("matches", "filters", "timeouts"):
        assert served[key] == USER_RULES[0][key]
    assert legacy == USER_RULES[1]
    assert applied_weight(rules, STABLE, CANARY) == weight


def test_the_rewrite_is_idempotent_and_moves_back_to_zero() -> None:
    once = desired_rules(USER_RULES, STABLE, CANARY, 25, HEADER)
    assert desired_rules(once, STABLE, CANARY, 25, HEADER) == once
    back = desired_rules(once, STABLE, CANARY, 0)
    assert weights(back[0]) == {STABLE: 100, CANARY: 0}
    assert len(back) == 2  # the header rule is gone
    assert back[1] == USER_RULES[1]


def test_a_header_rule_sends_matching_requests_to_the_canary_with_the_users_matches_and_filters() -> None:
    rules = desired_rules(USER_RULES, STABLE, CANARY, 5, HEADER)
    assert [r.get("name") for r in rules] == [None, None, "mlrollout-header-0"]
    header = rules[2]
    assert header["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [{"name": "X-Canary", "value": "always", "type": "Exact"}],
        }
    ]
    assert weights(header) == {CANARY: 1}
    assert header["filters"] == USER_RULES[0]["filters"]
    assert header["timeouts"] == USER_RULES[0]["timeouts"]
    # The weighted rule is unchanged by the header rule.
    assert weights(rules[0]) == {STABLE: 95, CANARY: 5}


def test_other_backends_in_a_managed_rule_are_kept_after_ours() -> None:
    mirror = {"group": "", "kind": "Service", "name": "shadow-sink", "port": 9000, "weight": 0}
    rules = [{**USER_RULES[0], "backendRefs": [*USER_RULES[0]["backendRefs"], mirror]}]
    out = desired_rules(rules, STABLE, CANARY, 10)
    assert out[0]["backendRefs"][2] == mirror


def test_a_route_without_a_stable_backend_is_not_managed() -> None:
    assert managed_rules(USER_RULES[1:], STABLE) == []
    assert desired_rules(USER_RULES[1:], STABLE, CANARY, 50) == USER_RULES[1:]
    assert applied_weight(USER_RULES[1:], STABLE, CANARY) is None


def accepted(generation: int = 3) -> RouteParent:
    return RouteParent("ml/gw", generation, True, True)


def obs(rules: list[dict[str, Any]], *parents: RouteParent, generation: int = 3) -> RouteObs:
    return RouteObs("churn", True, generation, "42", tuple(rules), tuple(parents))


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (None, "RouteNotFound"),
        (RouteObs("churn", exists=False), "RouteNotFound"),
        (obs(USER_RULES[1:], accepted()), "RouteHasNoStableBackend"),
        (obs(USER_RULES, accepted()), "RouteUpdating"),  # still weight 0 in the route
        (obs(desired_rules(USER_RULES, STABLE, CANARY, 25)), "RouteNotAccepted"),  # no parents
        (obs(desired_rules(USER_RULES, STABLE, CANARY, 25), accepted(2)), "RouteUpdating"),  # old generation
        (
            obs(
                desired_rules(USER_RULES, STABLE, CANARY, 25),
                RouteParent("ml/gw", 3, True, False, "BackendNotFound", "service churn-canary not found"),
            ),
            "BackendNotFound",
        ),
        (obs(desired_rules(USER_RULES, STABLE, CANARY, 25), accepted()), ""),
    ],
)
def test_a_route_is_served_only_when_it_carries_the_weight_and_every_gateway_accepted_it(
    route: RouteObs | None, reason: str
) -> None:
    verdict = route_verdict(route, STABLE, CANARY, 25, ())
    assert verdict.ok == (reason == "")
    assert verdict.reason == reason
    if reason:
        assert verdict.message


def test_router_writes_only_when_the_route_differs_and_guards_with_the_resource_version() -> None:
    router = GatewayAPIRouter("churn", "churn")
    route = obs(USER_RULES, accepted())
    write = router.route_write(route, 25, HEADER)
    assert write is not None
    assert write.resource_version == "42"
    assert list(write.rules) == desired_rules(USER_RULES, STABLE, CANARY, 25, HEADER)
    assert router.route_write(obs(list(write.rules), accepted()), 25, HEADER) is None
    assert router.route_write(RouteObs("churn", exists=False), 25, ()) is None


@pytest.mark.parametrize(
    ("total", "weight", "fixed", "canary"),
    [
        (3, 0, None, 1),
        (3, 1, None, 1),
        (3, 50, None, 2),
        (3, 100, None, 3),
        (3, 1, 1, 1),
        (3, 100, 1, 1),
        (3, 0, 2, 2),
    ],
)
def test_canary_pods_do_not_follow_the_weight_when_fixed(
    total: int, weight: int, fixed: int | None, canary: int
) -> None:
    assert canary_replicas(total, weight, fixed) == canary
    plan = GatewayAPIRouter("r", "churn", fixed).set_weight(total, weight)
    assert (plan.stable_replicas, plan.canary_replicas) == (total, canary)  # stable keeps every pod


def test_route_obs_reads_rules_generation_and_each_gateways_conditions() -> None:
    body = {
        "metadata": {"name": "churn", "namespace": "ml", "generation": 4, "resourceVersion": "77"},
        "spec": {"rules": USER_RULES},
        "status": {
            "parents": [
                {
                    "parentRef": {"name": "gw"},
                    "controllerName": "traefik.io/gateway-controller",
                    "conditions": [
                        {"type": "Accepted", "status": "True", "observedGeneration": 4, "reason": "Accepted"},
                        {
                            "type": "ResolvedRefs",
                            "status": "False",
                            "observedGeneration": 4,
                            "reason": "BackendNotFound",
                            "message": "no service churn-canary",
                        },
                    ],
                }
            ]
        },
    }
    route = route_obs(body)
    assert (route.name, route.generation, route.resource_version) == ("churn", 4, "77")
    assert list(route.rules) == USER_RULES
    (parent,) = route.parents
    assert parent == RouteParent("ml/gw", 4, True, False, "BackendNotFound", "no service churn-canary")

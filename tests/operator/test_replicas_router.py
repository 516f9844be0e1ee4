"""Replica maths of the `replicas` router (weight = share of Ready pods)."""

from __future__ import annotations

import pytest
from mlrollout.operator.model import DeploymentObs
from mlrollout.operator.routers.replicas import ReplicasRouter, effective_weight, split_replicas


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (10, 0, (10, 0)),
        (10, 10, (9, 1)),
        (10, 50, (5, 5)),
        (10, 100, (0, 10)),
        (10, 1, (9, 1)),  # any weight above 0 gets a canary pod (ceil)
        (10, 99, (1, 9)),  # below 100 the stable track keeps a pod
        (4, 10, (3, 1)),
        (4, 25, (3, 1)),
        (4, 26, (2, 2)),
        (3, 50, (1, 2)),  # ceil(1.5) = 2
        (2, 10, (1, 1)),
        (2, 100, (0, 2)),
        (1, 10, (1, 1)),  # one replica: surge to one of each
        (1, 100, (0, 1)),
        (1, 0, (1, 0)),
        (1000, 33, (670, 330)),
    ],
)
def test_split_replicas(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert split_replicas(total, weight) == expected


@pytest.mark.parametrize(("total", "weight"), [(0, 10), (5, -1), (5, 101)])
def test_split_replicas_rejects_bad_input(total: int, weight: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        split_replicas(total, weight)


def test_split_keeps_total_and_monotonic() -> None:
    for total in range(2, 30):
        previous = 0
        for weight in range(101):
            stable, canary = split_replicas(total, weight)
            assert stable + canary == total
            assert canary >= previous
            previous = canary


@pytest.mark.parametrize(
    ("stable", "canary", "expected"), [(9, 1, 10), (5, 5, 50), (0, 4, 100), (0, 0, 0), (2, 1, 33)]
)
def test_effective_weight(stable: int, canary: int, expected: int) -> None:
    assert effective_weight(stable, canary) == expected


def obs(name: str, replicas: int, ready: int) -> DeploymentObs:
    return DeploymentObs(name=name, version="1", replicas=replicas, ready_replicas=ready)


@pytest.mark.parametrize(
    ("stable", "canary", "ok"),
    [
        (obs("s", 9, 9), obs("c", 1, 1), True),
        (obs("s", 9, 9), obs("c", 1, 0), False),  # canary not Ready yet
        (obs("s", 10, 10), obs("c", 1, 1), False),  # stable not scaled down: canary share diluted
        (obs("s", 9, 9), None, False),
        (None, obs("c", 1, 1), False),
        (obs("s", 9, 3), obs("c", 1, 1), True),  # stable pods terminating/starting do not block the canary
    ],
)
def test_verify_weight(stable: DeploymentObs | None, canary: DeploymentObs | None, ok: bool) -> None:
    router = ReplicasRouter()
    plan = router.set_weight(10, 10)
    assert (plan.stable_replicas, plan.canary_replicas) == (9, 1)
    assert router.verify_weight(plan, stable, canary) is ok


def test_verify_weight_zero_canary_needs_no_pods() -> None:
    router = ReplicasRouter()
    assert router.verify_weight(router.set_weight(4, 0), obs("s", 4, 4), None)
    assert router.verify_weight(router.set_weight(4, 100), None, obs("c", 4, 4))

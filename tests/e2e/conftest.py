"""Fixtures for end-to-end tests: every part real (control plane, MLflow, operator process,
gunicorn serving processes, Prometheus from Debian's package). See harness.py for the pod runner."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster.helpers import CRD, Operator
from faulty_model import register_broken
from harness import Kube, TargetBoard, dataset_rows
from scenario import MODEL, E2eModels, Scenario, start_prometheus
from support.mlflow_models import train_and_register
from support.prometheus import PrometheusServer

# e2e tests are named test_e2e_*, so their namespaces (see the `namespace` fixture) match this.
E2E_NAMESPACES = "t-test-e2e-*"


@pytest.fixture(scope="session")
def e2e_models(mlflow_server: Any) -> E2eModels:
    uri = mlflow_server.tracking_uri
    good = train_and_register(uri, MODEL, kind="logreg", seed=0)
    better = train_and_register(uri, MODEL, kind="logreg", seed=1)
    poor = train_and_register(uri, MODEL, quality="poor", seed=3)
    broken = register_broken(uri, MODEL)
    return E2eModels(good, better, poor, broken)


@pytest.fixture(scope="session")
def rows() -> tuple[list[dict[str, float]], list[int]]:
    return dataset_rows("breast_cancer", 200)


class E2eOperator(Operator):
    """The operator process (as tests/cluster runs it), watching only the e2e namespaces."""

    log_name = "operator-e2e"
    namespaces = (E2E_NAMESPACES,)
    resync_seconds = None  # the operator's default


@pytest.fixture(scope="session")
def e2e_operator(
    cluster: Any, mlflow_server: Any, component_logs: Any, request: pytest.FixtureRequest
) -> Iterator[Operator | None]:
    """Our own operator, unless tests/cluster's clusterwide operator runs in this session: two
    operators acting on the same objects would race, so then that one serves these tests too."""
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.mlrollout.io"
    )
    shared = any(
        "/cluster/" in item.nodeid
        and {"operator", "running_operator"} & set(getattr(item, "fixturenames", ()))
        for item in request.session.items
    )
    if shared:
        yield None
        return
    op = E2eOperator(cluster, mlflow_server.tracking_uri, component_logs)
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="session")
def prometheus(component_logs: Any) -> Iterator[PrometheusServer]:
    prom = start_prometheus(component_logs, "prometheus")
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="session")
def board(prometheus: PrometheusServer) -> TargetBoard:
    return TargetBoard(prometheus)


@pytest.fixture
def kube(cluster: Any) -> Kube:
    return Kube(cluster.env())


@pytest.fixture
def make_scenario(
    kube: Kube, namespace: str, board: TargetBoard, component_logs: Any, e2e_operator: Any
) -> Iterator[Callable[..., Scenario]]:
    """make(name, board=None) -> a started Scenario in this test's namespace; all stopped after."""
    opened: list[Scenario] = []

    def make(name: str, board_override: TargetBoard | None = None) -> Scenario:
        sc = Scenario(kube, namespace, name, board_override or board, component_logs).__enter__()
        opened.append(sc)
        return sc

    try:
        yield make
    finally:
        for sc in opened:
            sc.__exit__()

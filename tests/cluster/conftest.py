"""Fixtures for operator cluster tests (helpers live in cluster/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster.helpers import CRD, MODEL, Kubectl, Models, Operator, TcpProxy
from support.mlflow_models import train_and_register


@pytest.fixture(scope="session")
def models(mlflow_server: Any) -> Models:
    """Four versions of one registered model: three good ones and one below any sane gate."""
    uri = mlflow_server.tracking_uri
    v1 = train_and_register(uri, MODEL, kind="logreg", seed=0)
    v2 = train_and_register(uri, MODEL, kind="logreg", seed=1)  # kind="tree" trips skops trust checks
    v3 = train_and_register(uri, MODEL, kind="logreg", seed=2)
    poor = train_and_register(uri, MODEL, quality="poor", seed=3)
    assert poor.f1 < 0.8 < min(v1.f1, v2.f1, v3.f1)
    return Models(v1, v2, v3, poor)


@pytest.fixture(scope="session")
def crd(cluster: Any) -> Path:
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.mlrollout.io"
    )
    return CRD


@pytest.fixture(scope="session")
def operator(cluster: Any, crd: Path, mlflow_server: Any, component_logs: Any) -> Iterator[Operator]:
    op = Operator(cluster, mlflow_server.tracking_uri, component_logs)
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def running_operator(operator: Operator) -> Operator:
    """The shared operator, restarted if an earlier test killed it."""
    if not operator.alive:
        operator.start()
    return operator


@pytest.fixture
def mlflow_proxy(mlflow_server: Any) -> Iterator[TcpProxy]:
    proxy = TcpProxy(int(mlflow_server.tracking_uri.rsplit(":", 1)[1]))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def kc(cluster: Any, namespace: str) -> Kubectl:
    return Kubectl(cluster, namespace)

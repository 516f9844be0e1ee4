"""The registry adapter against a real MLflow tracking server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from mlrollout.operator.model import RegistryFailure, Resolution
from mlrollout.operator.registry import MlflowRegistry
from mlrollout.operator.spec import ModelRef
from support.mlflow_models import train_and_register
from support.procs import free_port

pytestmark = pytest.mark.mlflow
T = TypeVar("T")


def with_registry(uri: str, body: Callable[[MlflowRegistry], Awaitable[T]]) -> T:
    async def go() -> T:
        registry = MlflowRegistry(uri)
        try:
            return await body(registry)
        finally:
            await registry.close()

    return asyncio.run(go())


def test_resolves_version_and_alias_to_pinned_artifact(mlflow_server: Any) -> None:
    good = train_and_register(mlflow_server.tracking_uri, "reg-churn", quality="good", alias="champion")

    async def scenario(registry: MlflowRegistry) -> tuple[Any, Any, Any]:
        by_version = await registry.resolve(ModelRef("reg-churn", version=good.version), "f1_score")
        by_alias = await registry.resolve(ModelRef("reg-churn", alias="champion"), "f1_score")
        missing = await registry.resolve(ModelRef("reg-churn", version=good.version), "no_such_metric")
        await registry.tag("reg-churn", good.version, "mlrollout.status", "deployed")
        return by_version, by_alias, missing

    by_version, by_alias, missing_metric = with_registry(mlflow_server.tracking_uri, scenario)
    assert isinstance(by_version, Resolution)
    assert by_version.version == good.version
    assert by_version.model_uri == good.source  # the artifact location, not models:/ or an alias
    assert by_version.run_id == good.run_id
    assert by_version.gate_value == pytest.approx(good.f1)
    assert isinstance(by_alias, Resolution)
    assert by_alias.version == good.version
    assert by_alias.model_uri == good.source
    assert isinstance(missing_metric, Resolution)
    assert missing_metric.gate_value is None

    from mlflow.tracking import MlflowClient

    tags = MlflowClient(mlflow_server.tracking_uri).get_model_version("reg-churn", good.version).tags
    assert tags["mlrollout.status"] == "deployed"


@pytest.mark.parametrize(
    "ref",
    [
        ModelRef("reg-missing", version="1"),
        ModelRef("reg-churn2", version="99"),
        ModelRef("reg-churn2", alias="nope"),
    ],
)
def test_unknown_model_version_or_alias_is_permanent(mlflow_server: Any, ref: ModelRef) -> None:
    train_and_register(mlflow_server.tracking_uri, "reg-churn2")
    answer = with_registry(mlflow_server.tracking_uri, lambda r: r.resolve(ref, "f1_score"))
    assert isinstance(answer, RegistryFailure)
    assert not answer.temporary
    assert answer.reason == "ModelVersionNotFound"


def test_unreachable_server_is_temporary() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    answer = with_registry(uri, lambda r: r.resolve(ModelRef("m", version="1"), "f1_score"))
    assert isinstance(answer, RegistryFailure)
    assert answer.temporary
    assert answer.reason == "RegistryUnreachable"
    assert uri in answer.message

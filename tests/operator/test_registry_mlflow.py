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


def test_promote_alias_points_at_the_promoted_version_and_a_rollback_leaves_it(mlflow_server: Any) -> None:
    """Planner -> applier -> real MLflow: after a promotion the alias named in spec.rollout.promoteAlias
    is read back pointing at the promoted version; a rollback of the next canary does not move it."""
    from datetime import UTC, datetime

    from mlflow.tracking import MlflowClient
    from mlrollout.operator.applier import ServiceMemory, apply_plan
    from mlrollout.operator.model import DeploymentObs, Observed, Status
    from mlrollout.operator.planner import plan
    from mlrollout.operator.spec import parse_spec

    uri = mlflow_server.tracking_uri
    v1 = train_and_register(uri, "reg-alias", quality="good", alias="champion")
    v2 = train_and_register(uri, "reg-alias", quality="good", seed=1)
    v3 = train_and_register(uri, "reg-alias", quality="good", seed=2)
    client = MlflowClient(uri)
    assert client.get_model_version_by_alias("reg-alias", "champion").version == v1.version

    def spec(version: str, intent: dict[str, Any]) -> Any:
        return parse_spec(
            {
                "model": {"name": "reg-alias", "version": version},
                "serving": {"image": "serve:1", "replicas": 2},
                "rollout": {"promoteAlias": "champion"},
                "intent": intent,
            }
        )

    class NoKube:
        async def apply_deployment(self, manifest: Any) -> None: ...
        async def scale_deployment(self, *args: Any) -> None: ...
        async def apply_service(self, manifest: Any) -> None: ...
        async def delete_deployment(self, *args: Any) -> None: ...
        async def label_pod(self, *args: Any) -> None: ...
        async def patch_status(self, *args: Any) -> None: ...

    async def step(registry: MlflowRegistry, status: Status, version: str, intent: dict[str, Any]) -> Status:
        s = spec(version, intent)
        answer = await registry.resolve(s.model, s.gate.metric)
        ready = {
            name: DeploymentObs(name, name.split("-v")[1].split("-")[0], 2, 2)
            for name in (t.deployment for t in (status.stable, status.canary) if t is not None)
        }
        decided = plan("md", s, status, Observed(datetime.now(UTC), 1, ready, answer))
        md = {"metadata": {"name": "md", "namespace": "ns", "uid": "u"}, "status": status.to_dict()}
        await apply_plan(
            NoKube(),  # type: ignore[arg-type]
            md,
            s,
            decided,
            observed=ready,
            pods=[],
            post_event=lambda e: None,
            registry=registry,
            service=ServiceMemory(),
        )
        return decided.status

    async def scenario(registry: MlflowRegistry) -> tuple[Status, Status]:
        status = await step(registry, Status(), v1.version, {"id": "a", "abort": True})  # first: stable
        status = await step(registry, status, v2.version, {"id": "b", "promote": "step"})  # canary starts
        promoted = await step(registry, status, v2.version, {"id": "c", "promote": "full"})
        status = await step(registry, promoted, v3.version, {"id": "d", "promote": "step"})
        rolled_back = await step(registry, status, v3.version, {"id": "e", "abort": True})
        return promoted, rolled_back

    promoted, rolled_back = with_registry(uri, scenario)
    assert promoted.stable is not None
    assert promoted.stable.version == v2.version
    assert client.get_model_version_by_alias("reg-alias", "champion").version == v2.version
    assert rolled_back.phase == "RolledBack"
    assert client.get_model_version_by_alias("reg-alias", "champion").version == v2.version
    assert client.get_model_version("reg-alias", v3.version).tags["mlrollout.status"] == "rolled_back"

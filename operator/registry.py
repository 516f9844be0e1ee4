"""MLflow registry adapter: resolve spec.model to an exact version and its immutable artifact URI,
read the gate metric from the version's source run, and tag versions with rollout outcomes.

Errors are classified for the planner: an unreachable server is temporary (retry, serving frozen);
a missing model/version/alias is permanent (a condition until the spec changes).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Protocol

from mlrollout.operator.model import RegistryFailure, Resolution
from mlrollout.operator.spec import ModelRef

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


class Registry(Protocol):
    async def resolve(self, ref: ModelRef, metric: str) -> Resolution | RegistryFailure: ...

    async def tag(self, name: str, version: str, key: str, value: str) -> None: ...


def configure_client_defaults() -> None:
    """Fail fast instead of MLflow's default minutes of retries: the operator retries on its own."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def classify(exc: BaseException, tracking_uri: str, ref: ModelRef) -> RegistryFailure:
    """Map an MLflow client error to a temporary or permanent failure with a readable message."""
    code = str(getattr(exc, "error_code", "") or "")
    what = f"{ref.name} version {ref.version}" if ref.version else f"{ref.name} alias {ref.alias!r}"
    if code in _NOT_FOUND_CODES:
        return RegistryFailure(False, "ModelVersionNotFound", f"MLflow at {tracking_uri} has no {what}")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RegistryFailure(
        True, "RegistryUnreachable", f"MLflow at {tracking_uri} unreachable: {first_line[:300]}"
    )


class MlflowRegistry:
    """The real registry over mlflow-skinny's client (blocking calls run in a worker thread)."""

    def __init__(self, tracking_uri: str) -> None:
        configure_client_defaults()
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self._client: Any = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _resolve(self, ref: ModelRef, metric: str) -> Resolution:
        if ref.version is not None:
            mv = self._client.get_model_version(ref.name, ref.version)
        else:
            mv = self._client.get_model_version_by_alias(ref.name, ref.alias)
        version = str(mv.version)
        # The artifact location, never `models:/name@alias`: pods must load exactly this version.
        uri = str(self._client.get_model_version_download_uri(ref.name, version))
        value: float | None = None
        if mv.run_id:
            metrics = self._client.get_run(mv.run_id).data.metrics
            raw = metrics.get(metric)
            value = float(raw) if raw is not None else None
        return Resolution(version=version, model_uri=uri, run_id=mv.run_id or None, gate_value=value)

    async def resolve(self, ref: ModelRef, metric: str) -> Resolution | RegistryFailure:
        try:
            return await asyncio.to_thread(self._resolve, ref, metric)
        except Exception as exc:  # every client failure becomes a classified condition
            return classify(exc, self.tracking_uri, ref)

    async def tag(self, name: str, version: str, key: str, value: str) -> None:
        await asyncio.to_thread(self._client.set_model_version_tag, name, version, key, value)


class RegistryPool:
    """One client per tracking URI (ModelDeployments may point at different servers)."""

    def __init__(self, default_uri: str | None) -> None:
        self.default_uri = default_uri
        self._clients: dict[str, MlflowRegistry] = {}

    def for_uri(self, uri: str | None) -> MlflowRegistry | None:
        uri = uri or self.default_uri
        if not uri:
            return None
        if uri not in self._clients:
            self._clients[uri] = MlflowRegistry(uri)
        return self._clients[uri]

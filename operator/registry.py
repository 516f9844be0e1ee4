"""MLflow registry adapter: resolve spec.model to an exact version and its immutable artifact URI,
read the gate metric from the version's source run, and tag versions with rollout outcomes.

Speaks MLflow's REST API directly with aiohttp: the operator stays fully async and never imports
the mlflow client (its import alone costs seconds and hundreds of MB). Errors are classified for
the planner: an unreachable server is temporary (retry, serving frozen); a missing
model/version/alias is permanent (a condition until the spec changes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
from mlrollout.operator.model import RegistryFailure, Resolution
from mlrollout.operator.spec import ModelRef

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}
VERSION_CACHE_SECONDS = 300.0  # an exact version's source and run metrics do not change


class Registry(Protocol):
    async def resolve(self, ref: ModelRef, metric: str) -> Resolution | RegistryFailure: ...

    async def tag(self, name: str, version: str, key: str, value: str) -> None: ...

    async def set_alias(self, name: str, alias: str, version: str) -> None: ...


class RegistryError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def classify(exc: RegistryError, tracking_uri: str, ref: ModelRef) -> RegistryFailure:
    """Map a registry error to a temporary or permanent failure with a readable message."""
    what = f"{ref.name} version {ref.version}" if ref.version else f"{ref.name} alias {ref.alias!r}"
    if exc.code in _NOT_FOUND_CODES or exc.status == 404:
        return RegistryFailure(False, "ModelVersionNotFound", f"MLflow at {tracking_uri} has no {what}")
    if exc.status in (401, 403):
        return RegistryFailure(False, "RegistryForbidden", f"MLflow at {tracking_uri} refused access: {exc}")
    return RegistryFailure(True, "RegistryUnreachable", f"MLflow at {tracking_uri} unreachable: {exc}")


def _auth_headers() -> dict[str, str]:
    """The same credentials the mlflow client reads from its environment."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": aiohttp.BasicAuth(user, password).encode()}
    return {}


class MlflowRegistry:
    """The MLflow tracking server's REST API (`/api/2.0/mlflow/...`)."""

    def __init__(self, tracking_uri: str, *, timeout_seconds: float = 5.0) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._versions: dict[tuple[str, str, str], tuple[float, Resolution]] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=_auth_headers())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        url = f"{self.tracking_uri}/api/2.0/mlflow/{path}"
        try:
            async with self._http().request(method, url, params=params, json=body) as resp:
                try:
                    payload: Any = await resp.json(content_type=None)
                except ValueError:
                    payload = None
                if resp.status >= 400:
                    data = payload if isinstance(payload, dict) else {}
                    raise RegistryError(
                        f"HTTP {resp.status} {data.get('message') or resp.reason}",
                        status=resp.status,
                        code=str(data.get("error_code") or ""),
                    )
                if not isinstance(payload, dict):
                    raise RegistryError(f"{path}: not a JSON object")
                return payload
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RegistryError(f"{type(exc).__name__}: {exc}"[:300]) from exc

    async def _resolve(self, ref: ModelRef, metric: str) -> Resolution:
        if ref.version is not None:
            cached = self._versions.get((ref.name, ref.version, metric))
            if cached and time.monotonic() - cached[0] < VERSION_CACHE_SECONDS:
                return cached[1]
            mv = await self._call(
                "GET", "model-versions/get", params={"name": ref.name, "version": ref.version}
            )
        else:
            assert ref.alias is not None
            mv = await self._call(
                "GET", "registered-models/alias", params={"name": ref.name, "alias": ref.alias}
            )
        version_info = mv.get("model_version") or {}
        version = str(version_info.get("version") or "")
        if not version:
            raise RegistryError("model version answer has no version", code="RESOURCE_DOES_NOT_EXIST")
        # The artifact location, never `models:/name@alias`: pods must load exactly this version.
        uri = await self._call(
            "GET", "model-versions/get-download-uri", params={"name": ref.name, "version": version}
        )
        run_id = str(version_info.get("run_id") or "") or None
        value: float | None = None
        if run_id:
            run = await self._call("GET", "runs/get", params={"run_id": run_id})
            for m in ((run.get("run") or {}).get("data") or {}).get("metrics") or []:
                if m.get("key") == metric:
                    value = float(m["value"])
        resolution = Resolution(
            version=version, model_uri=str(uri.get("artifact_uri") or ""), run_id=run_id, gate_value=value
        )
        self._versions[(ref.name, version, metric)] = (time.monotonic(), resolution)
        return resolution

    async def resolve(self, ref: ModelRef, metric: str) -> Resolution | RegistryFailure:
        try:
            return await self._resolve(ref, metric)
        except RegistryError as exc:
            return classify(exc, self.tracking_uri, ref)

    async def tag(self, name: str, version: str, key: str, value: str) -> None:
        await self._call(
            "POST",
            "model-versions/set-tag",
            body={"name": name, "version": version, "key": key, "value": value},
        )

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (MLflow moves it if it pointed elsewhere; idempotent)."""
        await self._call(
            "POST",
            "registered-models/alias",
            body={"name": name, "alias": alias, "version": version},
        )


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

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()

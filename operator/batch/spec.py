"""A BatchPrediction's spec as typed values (pure). The CRD schema refuses most bad specs at `kubectl
apply`; this repeats the checks the schema cannot state, so a spec is never half-applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BATCH_PLURAL = "batchpredictions"
BATCH_KIND = "BatchPrediction"
DATA_MOUNT = "/data"  # where spec.volume is mounted in every shard's pod


class InvalidBatchSpec(ValueError):
    pass


@dataclass(frozen=True)
class BatchModel:
    model_deployment: str | None = None  # its status.stable at start
    name: str | None = None
    version: str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class BatchSpec:
    model: BatchModel
    input: str  # a path under the volume (relative), or a URI the pods can read
    output: str  # a directory under the volume (relative)
    volume: Mapping[str, Any]  # {persistentVolumeClaim: {...}} or {hostPath: {...}}
    shards: int = 1
    parallelism: int | None = None
    backoff_limit_per_index: int = 2
    id_column: str | None = None
    image: str | None = None
    tracking_uri: str | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    env: tuple[Mapping[str, Any], ...] = ()
    active_deadline_seconds: int | None = None

    @property
    def input_path(self) -> str:
        """What a shard's --input is: a URI as given, a relative path under the mounted volume."""
        return self.input if "://" in self.input or ":/" in self.input else f"{DATA_MOUNT}/{self.input}"

    @property
    def output_path(self) -> str:
        return f"{DATA_MOUNT}/{self.output.strip('/')}"


def parse_batch_spec(raw: Mapping[str, Any]) -> BatchSpec:
    model = raw.get("model") or {}
    ref = BatchModel(
        model_deployment=model.get("modelDeployment"),
        name=model.get("name"),
        version=None if model.get("version") is None else str(model.get("version")),
        alias=model.get("alias"),
    )
    if ref.model_deployment is None:
        if not ref.name or (ref.version is None) == (ref.alias is None):
            raise InvalidBatchSpec(
                "spec.model: give modelDeployment, or name with exactly one of version or alias"
            )
    elif ref.name or ref.version or ref.alias:
        raise InvalidBatchSpec("spec.model: modelDeployment excludes name, version and alias")
    volume = raw.get("volume") or {}
    if len([k for k in ("persistentVolumeClaim", "hostPath") if k in volume]) != 1:
        raise InvalidBatchSpec("spec.volume: exactly one of persistentVolumeClaim or hostPath")
    output = str(raw.get("output") or "")
    if not output or output.startswith("/") or ".." in output.split("/"):
        raise InvalidBatchSpec("spec.output: a relative directory under the volume, without '..'")
    source = str(raw.get("input") or "")
    if not source or ((source.startswith("/") or ".." in source.split("/")) and "://" not in source):
        raise InvalidBatchSpec("spec.input: a relative path under the volume or an artifact URI")
    shards = int(raw.get("shards", 1))
    parallelism = raw.get("parallelism")
    registry = raw.get("registry") or {}
    deadline = raw.get("activeDeadlineSeconds")
    return BatchSpec(
        model=ref,
        input=source,
        output=output,
        volume=volume,
        shards=shards,
        parallelism=None if parallelism is None else int(parallelism),
        backoff_limit_per_index=int(raw.get("backoffLimitPerIndex", 2)),
        id_column=raw.get("idColumn"),
        image=raw.get("image"),
        tracking_uri=registry.get("trackingUri"),
        resources=raw.get("resources") or {},
        env=tuple(raw.get("env") or ()),
        active_deadline_seconds=None if deadline is None else int(deadline),
    )

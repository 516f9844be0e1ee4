"""The Indexed Job that runs a BatchPrediction (pure): one shard per completion index.

Each index runs `mlrollout-batch --shards N` in the serving image (the model's dependencies are there,
kopf is not); the index comes from JOB_COMPLETION_INDEX. The pinned model URI is part of the pod
template, so a promotion during the run changes nothing for it. Pod failure policy:
- exit 2 (a row or column the signature refuses) and 3 (the model cannot load) fail the whole Job at
  once: a rerun reads the same bytes and fails the same way;
- a pod disrupted by the cluster (preemption, eviction, node drain: condition DisruptionTarget) is
  retried without counting against the index's retries;
- anything else (killed, out of memory, a transient read error) is retried per index, up to
  backoffLimitPerIndex times, each retry rewriting that index's part file from scratch.
No Service: the shards never talk to each other (the last one to finish writes the manifest)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlrollout.operator.batch.spec import BATCH_KIND, DATA_MOUNT, BatchSpec
from mlrollout.operator.spec import GROUP, VERSION

LABEL_BATCH = "mlrollout.io/batch-prediction"
CONTAINER = "score"
TERMINATION_LOG = "/dev/termination-log"
EXIT_BAD_INPUT, EXIT_MODEL = 2, 3


def job_name(bp_name: str) -> str:
    return f"{bp_name}-batch"


def owner_reference(bp: Mapping[str, Any]) -> dict[str, Any]:
    meta = bp["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": BATCH_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def shard_args(spec: BatchSpec, model_uri: str) -> list[str]:
    args = [
        "--model-uri",
        model_uri,
        "--input",
        spec.input_path,
        "--output-dir",
        spec.output_path,
        "--shards",
        str(spec.shards),
        "--report",
        TERMINATION_LOG,
        "--progress",
        "log",
    ]
    if spec.id_column:
        args += ["--id-column", spec.id_column]
    return args


def build_job(
    bp: Mapping[str, Any], spec: BatchSpec, model_uri: str, *, image: str, tracking_uri: str | None
) -> dict[str, Any]:
    name = bp["metadata"]["name"]
    env: list[dict[str, Any]] = [{"name": "OPENBLAS_NUM_THREADS", "value": "1"}]
    if tracking_uri:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": tracking_uri})
    env += [dict(e) for e in spec.env]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["mlrollout-batch"],
        "args": shard_args(spec, model_uri),
        "env": env,
        # The report (rows, or the error naming file, line and column) is the termination message:
        # the operator reads it from the pod's status, it never needs the data volume itself.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a pod path: downloads, MLflow's cache)
            {"name": "data", "mountPath": DATA_MOUNT},
        ],
    }
    if spec.resources:
        container["resources"] = dict(spec.resources)
    labels = {LABEL_BATCH: name}
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": spec.shards,
        "parallelism": spec.parallelism or spec.shards,
        "backoffLimitPerIndex": spec.backoff_limit_per_index,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [EXIT_BAD_INPUT, EXIT_MODEL],
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "containers": [container],
                "securityContext": {
                    "runAsNonRoot": True,
                    "fsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumes": [
                    {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
                    {"name": "data", **{k: dict(v) for k, v in spec.volume.items()}},
                ],
            },
        },
    }
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": bp["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(bp)],
        },
        "spec": job_spec,
    }

"""kopf wiring for BatchPrediction: pin the model once, create the Indexed Job, mirror its progress.

Thin on purpose: `jobs.build_job` and `status.batch_status` decide; this reads the BatchPrediction,
its Job and the Job's pods, creates the Job (409 = already there), writes status only when it changed
and posts an Event per decision. A timer re-reads every few seconds until the run ends. Deleting the
BatchPrediction cancels the run: the Job is its child (owner reference), so the garbage collector
deletes the Job and the Job's pods."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from mlrollout.operator.batch.jobs import build_job, job_name
from mlrollout.operator.batch.spec import BATCH_PLURAL, BatchSpec, InvalidBatchSpec, parse_batch_spec
from mlrollout.operator.batch.status import TERMINAL, BatchEvent, JobView, ShardPod, batch_status
from mlrollout.operator.handlers import runtime
from mlrollout.operator.kube import api_client
from mlrollout.operator.model import RegistryFailure
from mlrollout.operator.spec import GROUP, PLURAL, VERSION, ModelRef

TICK_SECONDS = float(os.environ.get("MLROLLOUT_BATCH_TICK_SECONDS", "3"))
_MERGE = "application/merge-patch+json"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


class _Clients:
    def __init__(self) -> None:
        api = api_client()
        self.api = api
        self.batch: Any = client.BatchV1Api(api)
        self.core: Any = client.CoreV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)


_clients: list[_Clients] = []


def clients() -> _Clients:
    if not _clients:
        _clients.append(_Clients())
    return _clients[0]


def _post(body: kopf.Body, events: list[BatchEvent]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1024])


async def _patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    await clients().custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, BATCH_PLURAL, name, {"status": status}, _content_type=_MERGE
    )


async def pin_model(namespace: str, spec: BatchSpec) -> tuple[dict[str, str], str | None]:
    """The exact version and artifact URI to score with (resolved once, kept in status), and the
    serving image of the ModelDeployment it came from (if any). Waiting is a TemporaryError."""
    ref = spec.model
    if ref.model_deployment:
        try:
            md = await clients().custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, ref.model_deployment
            )
        except ApiException as exc:
            if exc.status == 404:
                raise kopf.TemporaryError(
                    f"ModelDeployment {ref.model_deployment!r} not found", delay=5
                ) from exc
            raise
        stable = (md.get("status") or {}).get("stable") or {}
        if not stable.get("modelUri"):
            raise kopf.TemporaryError(
                f"ModelDeployment {ref.model_deployment!r} has no stable version yet", delay=5
            )
        image = ((md.get("spec") or {}).get("serving") or {}).get("image")
        name = (md.get("spec") or {}).get("model", {}).get("name", ref.model_deployment)
        return {"name": name, "version": str(stable["version"]), "uri": stable["modelUri"]}, image
    assert ref.name is not None
    registry = runtime().registries.for_uri(spec.tracking_uri)
    if registry is None:
        raise kopf.PermanentError(
            "set spec.registry.trackingUri (the operator has no MLROLLOUT_TRACKING_URI)"
        )
    answer = await registry.resolve(ModelRef(ref.name, ref.version, ref.alias), "")
    if isinstance(answer, RegistryFailure):
        if answer.temporary:
            raise kopf.TemporaryError(f"model registry: {answer.message}", delay=10)
        raise kopf.PermanentError(f"{answer.reason}: {answer.message}")
    return {"name": ref.name, "version": answer.version, "uri": answer.model_uri}, None


async def observe(namespace: str, name: str) -> tuple[JobView | None, list[ShardPod]]:
    try:
        job = await clients().batch.read_namespaced_job(job_name(name), namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None, []
        raise
    pods = await clients().core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name(name)}")
    st = job.status
    view = JobView(
        active=st.active or 0,
        failed=st.failed or 0,
        completed_indexes=st.completed_indexes or "",
        failed_indexes=st.failed_indexes or "",
        conditions=tuple((c.type, c.status, c.reason or "", c.message or "") for c in (st.conditions or [])),
        start_time=st.start_time,
        completion_time=st.completion_time,
    )
    shards = []
    for pod in pods.items:
        index = (pod.metadata.annotations or {}).get(INDEX_ANNOTATION)
        if index is None:
            continue
        message, code = "", None
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            terminated = cs.state.terminated if cs.state else None
            if terminated is not None:
                message, code = terminated.message or "", terminated.exit_code
        shards.append(ShardPod(int(index), pod.status.phase or "", message.strip(), code))
    return view, shards


async def reconcile_batch(body: kopf.Body) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    try:
        current = await clients().custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, BATCH_PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    status: dict[str, Any] = dict(current.get("status") or {})
    if status.get("phase") in TERMINAL:
        return
    try:
        spec = parse_batch_spec(current.get("spec") or {})
    except InvalidBatchSpec as exc:
        failed = {"phase": "Failed", "message": f"invalid spec: {exc}"}
        if status.get("message") != failed["message"]:
            await _patch_status(namespace, name, failed)
            _post(body, [BatchEvent("Warning", "InvalidSpec", str(exc))])
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc
    if not status.get("model"):
        try:
            model, md_image = await pin_model(namespace, spec)
        except kopf.TemporaryError as exc:
            if status.get("message") != str(exc):
                await _patch_status(namespace, name, {"phase": "Pending", "message": str(exc)})
            raise
        except kopf.PermanentError as exc:
            await _patch_status(namespace, name, {"phase": "Failed", "message": str(exc)})
            _post(body, [BatchEvent("Warning", "ModelNotFound", str(exc))])
            raise
        image = spec.image or md_image
        if not image:
            message = "set spec.image (the serving image the shards run in)"
            await _patch_status(namespace, name, {"phase": "Failed", "message": message})
            _post(body, [BatchEvent("Warning", "InvalidSpec", message)])
            raise kopf.PermanentError(message)
        status = {"model": model | {"image": image}, "phase": "Pending"}
        await _patch_status(namespace, name, {**status, "message": None})
        _post(
            body,
            [
                BatchEvent(
                    "Normal",
                    "ModelPinned",
                    f"model {model['name']} version {model['version']} ({model['uri']})",
                )
            ],
        )
    model = status["model"]
    job, pods = await observe(namespace, name)
    if job is None:
        tracking = spec.tracking_uri or os.environ.get("MLROLLOUT_TRACKING_URI")
        manifest = build_job(current, spec, model["uri"], image=model["image"], tracking_uri=tracking)
        try:
            await clients().batch.create_namespaced_job(namespace, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
        job, pods = await observe(namespace, name)
    new, events = batch_status(
        status, shards=spec.shards, job_name=job_name(name), job=job, pods=pods, now=datetime.now(UTC)
    )
    if new != status:
        await _patch_status(namespace, name, new)
    _post(body, events)


@kopf.on.resume(GROUP, VERSION, BATCH_PLURAL)
@kopf.on.create(GROUP, VERSION, BATCH_PLURAL)
async def on_batch(body: kopf.Body, **_: Any) -> None:
    await reconcile_batch(body)


@kopf.timer(
    GROUP,
    VERSION,
    BATCH_PLURAL,
    interval=TICK_SECONDS,
    when=lambda status, **_: (status or {}).get("phase") not in TERMINAL,
)
async def batch_tick(body: kopf.Body, **_: Any) -> None:
    # A TemporaryError here only means "still waiting": the status says for what, the next tick looks.
    with contextlib.suppress(kopf.TemporaryError):
        await reconcile_batch(body)

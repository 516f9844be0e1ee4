"""Thin Flask layer: routes move bytes and headers between HTTP and the core `Service`.

Every response carries X-Request-ID, X-Model-Name and X-Model-Version; every failure is JSON."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from mlrollout.serving import __version__
from mlrollout.serving.auth import ApiKeys
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.errors import (
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ServingError,
)
from mlrollout.serving.feedback import PredictionStore
from mlrollout.serving.loading import name_and_version
from mlrollout.serving.metrics import Identity, ServingMetrics, exposition
from mlrollout.serving.model import LoadedModel
from mlrollout.serving.service import Reply, Service, error_reply, json_reply
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger("mlrollout.serving")
access = logging.getLogger("mlrollout.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
INTERNAL = b'{"error":{"code":"internal","message":"internal server error; quote the X-Request-ID header"}}'

Handler = Callable[[Service, str], Reply]


class ServerState:
    """What the routes share: the service once the model is loaded, and the identity for labels."""

    def __init__(self, config: ServingConfig, keys: ApiKeys, registry: CollectorRegistry | None) -> None:
        self.config = config
        self.keys = keys
        self.registry = registry
        self.service: Service | None = None
        self.load_error: str | None = None
        name, version = name_and_version(config.model_uri)
        self.name = config.model_name or name or "model"
        self.version = config.model_version or version or "0"
        self.store = PredictionStore(config.feedback)  # before fork, so workers share it

    def install(self, model: LoadedModel) -> None:
        self.name, self.version = model.name, model.version
        metrics = ServingMetrics(Identity(model.name, model.version, self.config.track), self.registry)
        self.service = Service(model, self.config, metrics, self.store)


def create_app(
    model: LoadedModel | Callable[[], LoadedModel],
    config: ServingConfig,
    keys: ApiKeys | None = None,
    registry: CollectorRegistry | None = None,
) -> Flask:
    """`model` is a loaded model, or a loader run in the background (readiness stays false until done).

    `registry` defaults to prometheus_client's global one (what /metrics exposes in single-process mode)."""
    keys = keys if keys is not None else ApiKeys.from_sources(config.api_keys_file, config.api_keys)
    state = ServerState(config, keys, registry)
    if isinstance(model, LoadedModel):
        state.install(model)
    else:
        threading.Thread(target=_load_in_background, args=(state, model), daemon=True).start()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.limits.max_body_bytes
    app.extensions["mlrollout"] = state

    def handle(endpoint: str, fn: Handler, *, auth: bool) -> Response:
        t0 = time.perf_counter()
        header_id = request.headers.get("X-Request-ID")
        request_id = header_id if header_id and REQUEST_ID.fullmatch(header_id) else os.urandom(12).hex()
        try:
            service = state.service
            if service is None:
                raise NotReady(state.load_error or "model is still loading", field="model")
            if auth:
                state.keys.check(request.headers)
            reply = fn(service, request_id)
        except ServingError as exc:
            reply = error_reply(exc)
        except RequestEntityTooLarge:
            reply = error_reply(
                PayloadTooLarge(
                    f"request body is over the limit of {config.limits.max_body_bytes} bytes", field="body"
                )
            )
        except Exception:
            log.exception("internal error on %s (request id %s)", endpoint, request_id)
            reply = Reply(500, INTERNAL)
        return respond(endpoint, reply, request_id, t0)

    def respond(endpoint: str, reply: Reply, request_id: str, t0: float) -> Response:
        response = Response(reply.body, status=reply.status, content_type=reply.content_type)
        headers = response.headers
        headers["X-Request-ID"] = request_id
        headers["X-Model-Name"] = state.name
        headers["X-Model-Version"] = state.version
        if reply.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="mlrollout"'
        elapsed = time.perf_counter() - t0
        if state.service is not None:
            state.service.metrics.request(endpoint, reply.status, elapsed)
        if config.log_requests:
            access.info(
                "%s %s %d %.2fms rid=%s",
                request.method,
                request.path,
                reply.status,
                elapsed * 1000,
                request_id,
            )
        return response

    def body() -> bytes:
        return request.get_data(cache=False)

    @app.post("/invocations")
    def invocations() -> Response:
        def run(s: Service, rid: str) -> Reply:
            return s.invocations(body(), request.content_type, rid)

        return handle("invocations", run, auth=True)

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    def infer(name: str, version: str | None = None) -> Response:
        def run(s: Service, rid: str) -> Reply:
            _check_version(s, version)
            return s.infer(name, body(), request.headers, rid)

        return handle("infer", run, auth=True)

    @app.post("/feedback")
    def feedback() -> Response:
        return handle("feedback", lambda s, rid: s.feedback(body(), request.content_type), auth=True)

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    def model_metadata(name: str, version: str | None = None) -> Response:
        def run(s: Service, rid: str) -> Reply:
            _check_version(s, version)
            return s.metadata(name)

        return handle("metadata", run, auth=True)

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    def model_ready(name: str, version: str | None = None) -> Response:
        def run(s: Service, rid: str) -> Reply:
            _check_version(s, version)
            s.check_model_name(name)
            return json_reply({"name": name, "ready": True})

        return handle("model_ready", run, auth=False)

    @app.get("/v2")
    def server_metadata() -> Response:
        return open_reply(
            "server_metadata",
            json_reply({"name": "mlrollout", "version": __version__, "extensions": ["binary_tensor_data"]}),
        )

    @app.get("/healthz")
    @app.get("/v2/health/live")
    def live() -> Response:
        return open_reply("live", json_reply({"live": True}))

    @app.get("/readyz")
    @app.get("/v2/health/ready")
    def ready() -> Response:
        loaded = state.service is not None
        reason = None if loaded else (state.load_error or "model is still loading")
        return open_reply("ready", json_reply({"ready": loaded, "reason": reason}, 200 if loaded else 503))

    @app.get("/version")
    def version() -> Response:
        return handle("version", lambda s, rid: s.version(), auth=False)

    @app.get("/metrics")
    def metrics() -> Response:
        t0 = time.perf_counter()
        return respond(
            "metrics", Reply(200, exposition(state.registry), CONTENT_TYPE_LATEST), os.urandom(12).hex(), t0
        )

    def open_reply(endpoint: str, reply: Reply) -> Response:
        return respond(
            endpoint, reply, request.headers.get("X-Request-ID") or os.urandom(12).hex(), time.perf_counter()
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        error: ServingError
        if exc.code == 405:
            error = MethodNotAllowed(f"{request.method} is not allowed on {request.path}", field="method")
        elif exc.code == 413:
            error = PayloadTooLarge(
                f"request body is over the limit of {config.limits.max_body_bytes} bytes", field="body"
            )
        elif exc.code == 404:
            error = NotFound(f"no endpoint at {request.path}", field="path")
        else:
            error = ServingError(exc.description or "bad request")
            error.status = exc.code or 400
        return open_reply("other", error_reply(error))

    return app


def _check_version(service: Service, version: str | None) -> None:
    if version is not None and version != service.model.version:
        raise NotFound(
            f"version {version!r} is not served here; this server serves version {service.model.version!r}",
            field="model_version",
        )


def _load_in_background(state: ServerState, loader: Callable[[], LoadedModel]) -> None:
    try:
        state.install(loader())
    except Exception as exc:
        state.load_error = f"model failed to load: {exc}"
        log.exception("model failed to load")


def app_state(app: Flask) -> Any:
    return app.extensions["mlrollout"]

"""HTTP layer: scoring calls on a bare WSGI path, everything else through thin Flask routes.

Both paths hand bytes and headers to the framework-free core (`Service`) through one `Dispatcher`,
so auth, request ids, error bodies, metrics and access logs are the same everywhere. Scoring calls
(`/invocations`, `/v2/models/.../infer`, `/feedback`) skip Flask's per-request machinery: it cost about
0.3 ms, more than parsing, validating and predicting a 1-row request together.

Every response carries X-Request-ID, X-Model-Name and X-Model-Version; every failure is JSON."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from mlrollout.serving import __version__
from mlrollout.serving.auth import ApiKeys
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.errors import (
    BadRequest,
    HeaderLookup,
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ServingError,
)
from mlrollout.serving.feedback import PredictionStore
from mlrollout.serving.loading import name_and_version
from mlrollout.serving.logs import AccessLog
from mlrollout.serving.metrics import Identity, ServingMetrics, exposition
from mlrollout.serving.model import LoadedModel
from mlrollout.serving.request_ids import RequestIds
from mlrollout.serving.service import Reply, Service, error_reply, json_reply
from mlrollout.serving.shadow import ShadowMirror, build_mirror, status_payload
from mlrollout.serving.shadow_relay import RelayClient
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from werkzeug.exceptions import HTTPException

log = logging.getLogger("mlrollout.serving")
ACCESS_LOG = AccessLog()
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
NEW_REQUEST_ID = RequestIds()
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
INTERNAL = b'{"error":{"code":"internal","message":"internal server error; quote the X-Request-ID header"}}'
STATUS_LINES = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Payload Too Large",
    415: "415 Unsupported Media Type",
    422: "422 Unprocessable Entity",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}

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
        metrics = ServingMetrics(
            Identity(model.name, model.version, self.config.track),
            self.registry,
            prediction_buckets=self.config.prediction_buckets,
            known_classes=model.classes or (),
        )
        self.service = Service(model, self.config, metrics, self.store, self._shadow(model))

    def _shadow(self, model: LoadedModel) -> ShadowMirror | None:
        config = self.config
        if not config.shadow_config:
            return None
        return build_mirror(
            config,
            Identity(model.name, model.version, config.track),
            model.schema.names,
            self.keys.keys[0].decode() if self.keys.enabled else None,
            registry=self.registry,
            relay=RelayClient(config.shadow_relay) if config.shadow_relay else None,
        )


@dataclass(frozen=True)
class Outcome:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Dispatcher:
    """Runs one endpoint for either HTTP path: request id, readiness, auth, 4xx/5xx shaping, metrics, log."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    @staticmethod
    def request_id(headers: HeaderLookup) -> str:
        given = headers.get("X-Request-ID")
        return given if given and REQUEST_ID.fullmatch(given) else NEW_REQUEST_ID.next()

    def run(
        self, endpoint: str, method: str, path: str, headers: HeaderLookup, fn: Handler, *, auth: bool
    ) -> Outcome:
        t0 = time.perf_counter()
        request_id = self.request_id(headers)
        state = self.state
        try:
            service = state.service
            if service is None:
                raise NotReady(state.load_error or "model is still loading", field="model")
            if auth:
                state.keys.check(headers)
            reply = fn(service, request_id)
        except ServingError as exc:
            reply = error_reply(exc)
        except Exception:
            log.exception("internal error on %s (request id %s)", endpoint, request_id)
            reply = Reply(500, INTERNAL)
        return self.finish(endpoint, method, path, reply, request_id=request_id, t0=t0)

    def open(self, endpoint: str, method: str, path: str, headers: HeaderLookup, reply: Reply) -> Outcome:
        return self.finish(
            endpoint, method, path, reply, request_id=self.request_id(headers), t0=time.perf_counter()
        )

    def finish(
        self, endpoint: str, method: str, path: str, reply: Reply, *, request_id: str, t0: float
    ) -> Outcome:
        state = self.state
        headers = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            ("X-Request-ID", request_id),
            ("X-Model-Name", state.name),
            ("X-Model-Version", state.version),
            *reply.headers,
        ]
        if reply.status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="mlrollout"'))
        elapsed = time.perf_counter() - t0
        if state.service is not None:
            state.service.metrics.request(endpoint, reply.status, elapsed)
        if state.config.log_requests:
            ACCESS_LOG.write(method, path, reply.status, elapsed * 1000, request_id)
        return Outcome(reply.status, headers, reply.body)


class EnvironHeaders:
    """Case-insensitive header lookup straight from a WSGI environ."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def get(self, key: str, /) -> str | None:
        name = key.upper().replace("-", "_")
        if name in {"CONTENT_TYPE", "CONTENT_LENGTH"}:
            return self._environ.get(name) or None
        value = self._environ.get("HTTP_" + name)
        return value if isinstance(value, str) else None


class ScoringRoutes:
    """WSGI middleware: serves the scoring endpoints itself and passes every other path to Flask."""

    def __init__(
        self, flask_app: Callable[..., Iterable[bytes]], dispatcher: Dispatcher, max_body: int
    ) -> None:
        self._flask = flask_app
        self._dispatcher = dispatcher
        self._max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        infer = INFER_PATH.fullmatch(path) if path.startswith("/v2/models/") else None
        if path not in {"/invocations", "/feedback"} and infer is None:
            return self._flask(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        headers = EnvironHeaders(environ)
        endpoint = "infer" if infer else path.lstrip("/")
        body = _BodyReader(environ, self._max_body)
        fn: Handler
        if method != "POST":
            fn = _refuse(MethodNotAllowed(f"{method} is not allowed on {path}; use POST", field="method"))
        elif infer is not None:
            name, version = infer.group(1), infer.group(2)

            def fn(s: Service, rid: str) -> Reply:
                _check_version(s, version)
                return s.infer(name, body.read(), headers, rid)

        elif path == "/invocations":

            def fn(s: Service, rid: str) -> Reply:
                return s.invocations(body.read(), headers.get("Content-Type"), rid)

        else:

            def fn(s: Service, rid: str) -> Reply:
                return s.feedback(body.read(), headers.get("Content-Type"))

        outcome = self._dispatcher.run(endpoint, method, path, headers, fn, auth=method == "POST")
        start_response(STATUS_LINES.get(outcome.status, f"{outcome.status} Error"), outcome.headers)
        return [outcome.body]


class _BodyReader:
    """Reads the request body once, refusing it (413) before reading when it is over the limit."""

    def __init__(self, environ: Mapping[str, Any], limit: int) -> None:
        self._environ = environ
        self._limit = limit

    def read(self) -> bytes:
        raw = self._environ.get("CONTENT_LENGTH") or ""
        stream = self._environ["wsgi.input"]
        if raw:
            try:
                length = int(raw)
            except ValueError:
                raise BadRequest(f"Content-Length {raw!r} is not a number", field="Content-Length") from None
            if length > self._limit:
                raise PayloadTooLarge(
                    f"request body is {length} bytes, over the limit of {self._limit} bytes", field="body"
                )
            return bytes(stream.read(length)) if length else b""
        data = bytes(stream.read(self._limit + 1))  # chunked: read at most one byte past the limit
        if len(data) > self._limit:
            raise PayloadTooLarge(f"request body is over the limit of {self._limit} bytes", field="body")
        return data


def _refuse(error: ServingError) -> Handler:
    def fn(service: Service, request_id: str) -> Reply:
        raise error

    return fn


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
    dispatcher = Dispatcher(state)
    app = Flask(__name__)
    app.extensions["mlrollout"] = state
    app.wsgi_app = ScoringRoutes(app.wsgi_app, dispatcher, config.limits.max_body_bytes)  # type: ignore[method-assign]

    def to_flask(outcome: Outcome) -> Response:
        return Response(outcome.body, status=outcome.status, headers=outcome.headers)

    def handle(endpoint: str, fn: Handler, *, auth: bool) -> Response:
        return to_flask(
            dispatcher.run(endpoint, request.method, request.path, request.headers, fn, auth=auth)
        )

    def open_reply(endpoint: str, reply: Reply) -> Response:
        return to_flask(dispatcher.open(endpoint, request.method, request.path, request.headers, reply))

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

    @app.get("/shadow/disagreements")
    def shadow_disagreements() -> Response:
        # Open like /metrics (the operator's plugin reads it through the API server's pod proxy,
        # which carries no API key); input rows are in it only when the spec allows recording them.
        try:
            limit = int(request.args.get("limit", "100"))
        except ValueError:
            return open_reply("shadow", error_reply(BadRequest("limit must be an integer", field="limit")))
        mirror = state.service.shadow if state.service is not None else None
        return open_reply(
            "shadow",
            json_reply({"model": state.name, "version": state.version, **status_payload(mirror, limit)}),
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return open_reply("metrics", Reply(200, exposition(state.registry), CONTENT_TYPE_LATEST))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        error: ServingError
        if exc.code == 405:
            error = MethodNotAllowed(f"{request.method} is not allowed on {request.path}", field="method")
        elif exc.code == 404:
            error = NotFound(f"no endpoint at {request.path}", field="path")
        else:
            error = BadRequest(exc.description or "bad request")
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
        # Log before readiness reports the failure: whoever waits for it (a probe, a test) then
        # finds the traceback written, and no thread is still formatting it. On CPython 3.11 a
        # traceback format (ast.parse for its carets) racing an ast.parse in another thread
        # (werkzeug compiles each URL rule that way) can raise "AST constructor recursion depth
        # mismatch" (python/cpython#106905).
        log.exception("model failed to load")
        state.load_error = f"model failed to load: {exc}"

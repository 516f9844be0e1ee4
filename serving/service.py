"""The framework-free core: one method per endpoint, bytes in, `Reply` out.

Parsing, validation, scoring, metrics and feedback live here; the Flask layer only moves bytes and
headers. Every client mistake is a ServingError (4xx); anything else is logged and answered as a
generic 500 that carries the request id and no internals."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from mlrollout.serving import parsing, v2
from mlrollout.serving.batching import MicroBatcher, batching_pays
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.errors import BadRequest, HeaderLookup, NotFound, SchemaViolation, ServingError
from mlrollout.serving.feedback import (
    VALUES,
    InvalidToken,
    PredictionStore,
    PredictionToken,
    sign_token,
    token_key,
    verify_token,
)
from mlrollout.serving.input_bins import input_bins_for
from mlrollout.serving.metrics import ServingMetrics
from mlrollout.serving.model import LoadedModel
from mlrollout.serving.shadow import ShadowMirror

log = logging.getLogger("mlrollout.serving")
JSON = "application/json"
TOKEN_HEADER = "X-Prediction-Token"  # noqa: S105 (a header name, not a secret)


MAX_TOKEN_CLASSES = 64


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY))


def error_reply(error: ServingError) -> Reply:
    return Reply(error.status, orjson.dumps(error.body()))


class Service:
    def __init__(
        self,
        model: LoadedModel,
        config: ServingConfig,
        metrics: ServingMetrics,
        store: PredictionStore | None = None,
        shadow: ShadowMirror | None = None,
    ) -> None:
        self.model = model
        self.shadow = shadow  # copies answered scoring requests to a shadow version, off the path
        self.config = config
        self.metrics = metrics
        self.limits = config.limits
        self.store = store if store is not None else PredictionStore(config.feedback)
        batching = batching_pays(config.microbatch, fastpath=bool(model.extra.get("fastpath")))
        self._batcher = MicroBatcher(model.predict, config.microbatch_max_rows) if batching else None
        self._class_index = {str(c): i for i, c in enumerate(model.classes or ())}
        self._class_position = {c: i for i, c in enumerate(model.classes or ())}
        self._token_key = token_key(model.name, config.feedback_key)
        # Up to 64 classes ride in each token (a header, so bounded); more and feedback falls back
        # to the receiving pod's classes plus the predicted ones.
        classes = tuple(self._class_index)
        self._token_classes = classes if len(classes) <= MAX_TOKEN_CLASSES else ()
        # A regressor: predictions go into the value histogram, and feedback labels are numbers.
        self._regression = model.task == "regressor" and not self._class_index
        metrics.model_loaded(model.flavor, model.load_seconds)
        # Live inputs in the training profile's bins (input drift); None when no profile was logged.
        self._input_bins = input_bins_for(model, metrics.registry, metrics.identity.labels())

    # ------------------------------------------------------------------ scoring
    def _score(
        self, batch: parsing.Batch, request_id: str
    ) -> tuple[npt.NDArray[Any], tuple[tuple[str, str], ...]]:
        stage = self.metrics.stage
        missing = batch.missing_counts(self.model.schema)
        if missing:
            self.metrics.missing_values(missing)
        parsing.validate(batch, self.model.schema)
        if self.model.categories:
            parsing.check_categories(batch, self.model.schema, self.model.categories)
        if self._input_bins is not None:
            self._input_bins.observe(batch, self.model.schema)
        t0 = time.perf_counter()
        try:
            predict = self._batcher.predict if self._batcher else self.model.predict
            predictions = predict(batch.values)
        except (ValueError, TypeError) as exc:
            raise SchemaViolation(f"the model could not score this input: {exc}", field="body") from None
        stage["predict"].observe(time.perf_counter() - t0)
        return predictions, self._record(predictions, request_id)

    def _record(self, predictions: npt.NDArray[Any], request_id: str) -> tuple[tuple[str, str], ...]:
        """Count the predictions; keep them for feedback; the token header feedback can carry."""
        if self._regression or (not self._class_index and predictions.dtype.kind == "f"):
            self.metrics.scored_values(predictions)
            return self._record_values(predictions, request_id) if self._regression else ()
        if len(predictions) == 1:
            counts: dict[Any, int] = {_plain(predictions[0]): 1}
        else:
            values, numbers = np.unique(predictions, return_counts=True)
            counts = {_plain(v): int(n) for v, n in zip(values, numbers, strict=True)}
        self.metrics.scored(counts, len(predictions))
        if not self._class_index or len(predictions) > self.store.limits.max_rows:
            return ()
        values = predictions.tolist()
        index = self._class_position
        self.store.put(request_id, [index.get(p, -1) for p in values])
        token = PredictionToken(
            self.model.name,
            self.model.version,
            request_id,
            tuple(_label(p) for p in values),
            self._token_classes,
        )
        return ((TOKEN_HEADER, sign_token(self._token_key, token)),)

    def _record_values(self, predictions: npt.NDArray[Any], request_id: str) -> tuple[tuple[str, str], ...]:
        """A regressor's predictions, kept (exact float64) and carried in the token for feedback."""
        if predictions.ndim != 1 or len(predictions) > self.store.limits.max_rows:
            return ()
        values = [float(v) for v in predictions.tolist()]
        self.store.put_values(request_id, values)
        token = PredictionToken(
            self.model.name,
            self.model.version,
            request_id,
            tuple(repr(v) for v in values),
            kind=VALUES,
        )
        return ((TOKEN_HEADER, sign_token(self._token_key, token)),)

    def invocations(self, body: bytes, content_type: str | None, request_id: str) -> Reply:
        t0 = time.perf_counter()
        parsing.check_body_size(len(body), self.limits)
        kind = parsing.check_media_type(content_type, parsing.JSON_TYPES | parsing.CSV_TYPES)
        if kind in parsing.CSV_TYPES:
            batch = parsing.parse_csv(body, self.model.schema, self.limits)
        else:
            batch = parsing.parse_invocations_json(parsing.load_json(body), self.model.schema, self.limits)
        self.metrics.stage["parse"].observe(time.perf_counter() - t0)
        predictions, headers = self._score(batch, request_id)
        t1 = time.perf_counter()
        reply = Reply(200, _dump_predictions(predictions), headers=headers)
        self.metrics.stage["serialize"].observe(time.perf_counter() - t1)
        if self.shadow is not None:
            self.shadow.offer(
                "/invocations", body, content_type or JSON, request_id, predictions, rows=batch.values
            )
        return reply

    def infer(self, name: str, body: bytes, headers: HeaderLookup, request_id: str) -> Reply:
        self.check_model_name(name)
        t0 = time.perf_counter()
        parsing.check_body_size(len(body), self.limits)
        header_length = headers.get("Inference-Header-Content-Length")
        if header_length is None:
            parsing.check_media_type(headers.get("Content-Type") or JSON, parsing.JSON_TYPES)
        request = v2.parse_infer(body, header_length, self.model.schema, self.limits)
        self.metrics.stage["parse"].observe(time.perf_counter() - t0)
        predictions, token = self._score(request.batch, request_id)
        t1 = time.perf_counter()
        answer = v2.infer_response(self.model.name, self.model.version, request.id, predictions)
        reply = Reply(200, answer, headers=token)
        self.metrics.stage["serialize"].observe(time.perf_counter() - t1)
        if self.shadow is not None and header_length is None:  # binary-extension bodies are not copied
            path = f"/v2/models/{self.model.name}/infer"
            self.shadow.offer(path, body, JSON, request_id, predictions, rows=request.batch.values)
        return reply

    # ------------------------------------------------------------------ feedback
    def feedback(self, body: bytes, content_type: str | None) -> Reply:
        parsing.check_body_size(len(body), self.limits)
        parsing.check_media_type(content_type, parsing.JSON_TYPES)
        payload = parsing.load_json(body)
        if not isinstance(payload, dict):
            raise BadRequest(
                "feedback must be a JSON object with request_id (or token) and labels", field="body"
            )
        token_text = payload.get("token")
        if token_text is not None:
            # Before the check below: a token carries its version's classes, so a pod whose own
            # model has none (a regressor, a custom pyfunc) still counts another version's labels.
            return self._token_feedback(token_text, payload)
        if self._regression:
            return self._regression_feedback(payload)
        if not self._class_index:
            raise SchemaViolation(
                "this model has no known classes, so feedback labels cannot be scored", field="labels"
            )
        request_id = payload.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise BadRequest(
                "request_id must be the X-Request-ID of the prediction being labelled "
                "(or send its X-Prediction-Token as token)",
                field="request_id",
            )
        labels = self._classes_of(_one_or_many(payload, "labels", "label"), "labels")
        if "predictions" in payload or "prediction" in payload:
            predicted = self._classes_of(_one_or_many(payload, "predictions", "prediction"), "predictions")
        else:
            stored = self.store.take(request_id)
            if stored is None:
                raise NotFound(
                    f"no stored prediction for request_id {request_id!r} (unknown, expired, already "
                    "labelled, answered by another pod, or over the stored row limit); send the "
                    "prediction's X-Prediction-Token as token, or 'predictions' with the labels",
                    field="request_id",
                )
            classes = list(self._class_index)
            predicted = [classes[i] if 0 <= i < len(classes) else "unknown" for i in stored]
        self._count(predicted, labels, None)
        return json_reply({"request_id": request_id, "accepted": len(labels)})

    def _token_feedback(self, token_text: Any, payload: Mapping[str, Any]) -> Reply:
        """Feedback through the Service: the token says which version predicted what, so any pod of
        any track counts it for that version."""
        if not isinstance(token_text, str):
            raise BadRequest("token must be the X-Prediction-Token of the prediction", field="token")
        try:
            token = verify_token(self._token_key, token_text)
        except InvalidToken as exc:
            raise BadRequest(str(exc), field="token") from None
        if token.model != self.model.name:
            raise SchemaViolation(
                f"token is for model {token.model!r}; this server serves {self.model.name!r}", field="token"
            )
        if token.regression:
            try:
                predicted = [float(p) for p in token.predicted]
            except ValueError:
                raise BadRequest("prediction token values are not numbers", field="token") from None
            numbers = _numbers_of(_one_or_many(payload, "labels", "label"), "labels")
            self._count_errors(predicted, numbers, token.version)
            return json_reply(
                {"request_id": token.request_id, "model_version": token.version, "accepted": len(numbers)}
            )
        known = set(token.classes) if token.classes else set(self._class_index) | set(token.predicted)
        labels = self._classes_of(_one_or_many(payload, "labels", "label"), "labels", known)
        self._count(list(token.predicted), labels, token.version)
        return json_reply(
            {"request_id": token.request_id, "model_version": token.version, "accepted": len(labels)}
        )

    def _regression_feedback(self, payload: Mapping[str, Any]) -> Reply:
        """A regressor's labels by request id: numbers, against the stored (or given) predictions."""
        request_id = payload.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise BadRequest(
                "request_id must be the X-Request-ID of the prediction being labelled "
                "(or send its X-Prediction-Token as token)",
                field="request_id",
            )
        labels = _numbers_of(_one_or_many(payload, "labels", "label"), "labels")
        if "predictions" in payload or "prediction" in payload:
            predicted = _numbers_of(_one_or_many(payload, "predictions", "prediction"), "predictions")
        else:
            stored = self.store.take_values(request_id)
            if stored is None:
                raise NotFound(
                    f"no stored prediction for request_id {request_id!r} (unknown, expired, already "
                    f"labelled, answered by another pod, or over {self.store.max_values} rows); send the "
                    "prediction's X-Prediction-Token as token, or 'predictions' with the labels",
                    field="request_id",
                )
            predicted = stored
        self._count_errors(predicted, labels, None)
        return json_reply({"request_id": request_id, "accepted": len(labels)})

    def _count_errors(self, predicted: list[float], labels: list[float], version: str | None) -> None:
        if len(predicted) != len(labels):
            raise SchemaViolation(f"{len(labels)} labels for {len(predicted)} predictions", field="labels")
        with np.errstate(over="ignore", invalid="ignore"):
            errors = np.asarray(predicted, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
            squared = np.square(errors)
        if not np.isfinite(squared).all():
            i = int(np.flatnonzero(~np.isfinite(squared))[0])
            raise SchemaViolation(
                f"labels[{i}] = {labels[i]!r} is too far from the prediction for a 64-bit squared error",
                field=f"labels[{i}]",
            )
        self.metrics.regression_labelled(errors, version)

    def _count(self, predicted: list[str], labels: list[str], version: str | None) -> None:
        if len(predicted) != len(labels):
            raise SchemaViolation(f"{len(labels)} labels for {len(predicted)} predictions", field="labels")
        pairs: dict[tuple[str, str], int] = {}
        for p, a in zip(predicted, labels, strict=True):
            pairs[(p, a)] = pairs.get((p, a), 0) + 1
        self.metrics.labelled(pairs, version)

    def _classes_of(self, values: list[Any], field: str, known: set[str] | None = None) -> list[str]:
        classes = self._class_index if known is None else known
        out = []
        for i, value in enumerate(values):
            text = str(value) if type(value) in (int, str) else None
            if text is None or text not in classes:
                raise SchemaViolation(
                    f"{field}[{i}] = {value!r} is not one of the model's classes {sorted(classes)}",
                    field=f"{field}[{i}]",
                )
            out.append(text)
        return out

    # ------------------------------------------------------------------ metadata
    def check_model_name(self, name: str) -> None:
        if name != self.model.name:
            raise NotFound(
                f"model {name!r} is not served here; this server serves {self.model.name!r}",
                field="model_name",
            )

    def metadata(self, name: str) -> Reply:
        self.check_model_name(name)
        return json_reply(
            v2.model_metadata(
                self.model.name,
                self.model.version,
                self.model.schema,
                f"mlflow_{self.model.flavor}",
                "FP64"
                if self._regression
                else "INT64"
                if self.model.classes and all(type(c) is int for c in self.model.classes)
                else "BYTES",
            )
        )

    def version(self) -> Reply:
        from mlrollout.serving import __version__

        return json_reply(
            {
                "model": self.model.name,
                "version": self.model.version,
                "track": self.config.track,
                "flavor": self.model.flavor,
                "fastpath": bool(self.model.extra.get("fastpath")),
                "microbatch": self._batcher is not None,
                "task": self.model.task,
                "source": self.model.source,
                "server": f"mlrollout {__version__}",
                "inputs": self.model.schema.describe(),
            }
        )


def _one_or_many(payload: Mapping[str, Any], many: str, one: str) -> list[Any]:
    if many in payload:
        values = payload[many]
        if not isinstance(values, list) or not values:
            raise BadRequest(f"{many} must be a non-empty array", field=many)
        return values
    if one in payload:
        return [payload[one]]
    raise BadRequest(f"send {many!r} (an array) or {one!r} (one value)", field=many)


def _numbers_of(values: list[Any], field: str) -> list[float]:
    """A regressor's labels (or predictions sent with them): finite JSON numbers, booleans refused."""
    out = []
    for i, value in enumerate(values):
        if type(value) not in (int, float) or not math.isfinite(value):
            raise SchemaViolation(
                f"{field}[{i}] = {value!r} is not a finite number; a regressor is labelled with numbers",
                field=f"{field}[{i}]",
            )
        out.append(float(value))
    return out


def _label(value: Any) -> str:
    """A predicted value as feedback and metrics spell its class."""
    return str(_plain(value))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _dump_predictions(predictions: npt.NDArray[Any]) -> bytes:
    try:
        return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # object arrays (e.g. string labels) are not serializable as numpy
        return orjson.dumps({"predictions": predictions.tolist()})

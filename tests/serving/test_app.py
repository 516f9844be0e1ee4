"""The Flask layer in-process (no gunicorn): readiness follows model loading, liveness does not."""

from __future__ import annotations

import threading
import time

import numpy as np
from mlrollout.serving.app import create_app
from mlrollout.serving.auth import ApiKeys
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.model import LoadedModel
from mlrollout.serving.schema import Column, InputSchema
from prometheus_client import CollectorRegistry


class Threshold:
    def predict(self, x: np.ndarray) -> np.ndarray:
        return (x[:, 0] > 0.5).astype(np.int64)


def model(version: str = "2") -> LoadedModel:
    schema = InputSchema((Column("x", "double"), Column("y", "double")))
    return LoadedModel(
        name="thr",
        version=version,
        schema=schema,
        predictor=Threshold(),
        flavor="sklearn",
        source="memory",
        classes=(0, 1),
    )


def test_readiness_is_false_until_the_model_is_loaded() -> None:
    release = threading.Event()

    def slow_loader() -> LoadedModel:
        release.wait(30)
        return model()

    app = create_app(slow_loader, ServingConfig(), ApiKeys(), CollectorRegistry())
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json == {"ready": False, "reason": "model is still loading"}
    scoring = client.post("/invocations", json={"instances": [[1, 2]]})
    assert scoring.status_code == 503
    assert scoring.json["error"]["code"] == "not_ready"
    release.set()
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "never became ready"
        time.sleep(0.01)
    response = client.post(
        "/invocations", json={"instances": [[0.9, 0], [0.1, 0]]}, headers={"X-Request-ID": "r-1"}
    )
    assert response.json == {"predictions": [1, 0]}
    assert (response.headers["X-Model-Name"], response.headers["X-Model-Version"]) == ("thr", "2")
    assert response.headers["X-Request-ID"] == "r-1"


def test_a_failed_load_keeps_readiness_false_with_the_reason() -> None:
    def broken_loader() -> LoadedModel:
        raise RuntimeError("artifact store unreachable")

    app = create_app(broken_loader, ServingConfig(), ApiKeys(), CollectorRegistry())
    client = app.test_client()
    deadline = time.monotonic() + 30
    while "failed" not in (client.get("/readyz").json or {}).get("reason", ""):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "artifact store unreachable" in response.json["reason"]
    assert client.get("/healthz").status_code == 200


def test_single_process_metrics_page_has_live_f1() -> None:
    registry = CollectorRegistry()
    app = create_app(model(), ServingConfig(), ApiKeys(), registry)
    client = app.test_client()
    client.post("/invocations", json={"instances": [[0.9, 0]]}, headers={"X-Request-ID": "p1"})
    assert client.post("/feedback", json={"request_id": "p1", "label": 1}).status_code == 200
    client.post("/invocations", json={"instances": [[0.1, 0]]}, headers={"X-Request-ID": "p2"})
    assert client.post("/feedback", json={"request_id": "p2", "label": 1}).status_code == 200
    identity = {"model": "thr", "model_version": "2", "track": "stable"}
    assert (
        registry.get_sample_value("mlrollout_feedback_total", {**identity, "predicted": "1", "actual": "1"})
        == 1
    )
    page = client.get("/metrics").text
    # One right, one wrong: class 1 has F1 2/3, class 0 has F1 0, macro 1/3.
    assert 'mlrollout_live_f1{model="thr",model_version="2",track="stable"} 0.333' in page
    assert 'mlrollout_live_f1_samples{model="thr",model_version="2",track="stable"} 2.0' in page


def test_scoring_path_limits_and_methods() -> None:
    import io

    from mlrollout.serving.parsing import Limits

    app = create_app(
        model(), ServingConfig(limits=Limits(max_body_bytes=200)), ApiKeys((b"k",)), CollectorRegistry()
    )
    client = app.test_client()
    auth = {"Authorization": "Bearer k"}
    big = client.post("/invocations", data=b"x" * 201, headers=auth, content_type="application/json")
    assert big.status_code == 413
    assert big.json["error"]["field"] == "body"
    chunked = app.test_client().post(
        "/invocations",
        input_stream=io.BytesIO(b"[" * 300),
        headers={**auth, "Transfer-Encoding": "chunked"},
        content_type="application/json",
    )
    assert chunked.status_code == 413
    wrong_method = client.get("/feedback", headers=auth)
    assert wrong_method.status_code == 405
    assert wrong_method.json["error"]["message"] == "GET is not allowed on /feedback; use POST"
    assert client.post(
        "/v2/models/thr/versions/2/infer",
        headers=auth,
        json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [0.9, 0]}]},
    ).json["outputs"][0]["data"] == [1]
    unknown = client.post("/v2/models/thr/versions/2/extra/infer", headers=auth, json={})
    assert unknown.status_code == 404
    assert unknown.headers["X-Model-Name"] == "thr"


def test_feedback_through_one_service_counts_for_the_version_that_predicted() -> None:
    """Two pods behind one Service: stable (version 1) and canary (version 2). The prediction is
    answered by the canary pod, its feedback lands on the stable pod: counted for version 2."""
    stable_registry, canary_registry = CollectorRegistry(), CollectorRegistry()
    stable = create_app(model("1"), ServingConfig(track="stable"), ApiKeys(), stable_registry).test_client()
    canary = create_app(model("2"), ServingConfig(track="canary"), ApiKeys(), canary_registry).test_client()
    predicted = canary.post("/invocations", json={"instances": [[0.9, 0], [0.1, 0]]})
    token = predicted.headers["X-Prediction-Token"]
    answer = stable.post("/feedback", json={"token": token, "labels": [1, 1]})
    assert answer.status_code == 200
    assert answer.json["model_version"] == "2"
    counted = {"model": "thr", "model_version": "2", "track": "stable", "predicted": "1", "actual": "1"}
    assert stable_registry.get_sample_value("mlrollout_feedback_total", counted) == 1
    wrong = {**counted, "predicted": "0"}
    assert stable_registry.get_sample_value("mlrollout_feedback_total", wrong) == 1
    own = {**counted, "model_version": "1"}
    assert stable_registry.get_sample_value("mlrollout_feedback_total", own) is None


def test_token_feedback_is_checked_against_the_predicting_versions_classes() -> None:
    """The canary knows a class the stable does not (or the receiving pod's model has no classes at
    all, as a custom pyfunc): the token's own class list decides which labels are valid."""
    from dataclasses import replace

    three = replace(model("2"), classes=(0, 1, 2))
    canary = create_app(three, ServingConfig(track="canary"), ApiKeys(), CollectorRegistry()).test_client()
    token = canary.post("/invocations", json={"instances": [[0.9, 0]]}).headers["X-Prediction-Token"]
    for receiver in (model("1"), replace(model("1"), classes=None)):
        registry = CollectorRegistry()
        pod = create_app(receiver, ServingConfig(track="stable"), ApiKeys(), registry).test_client()
        answer = pod.post("/feedback", json={"token": token, "labels": [2]})
        assert answer.status_code == 200, answer.json
        counted = {"model": "thr", "model_version": "2", "track": "stable", "predicted": "1", "actual": "2"}
        assert registry.get_sample_value("mlrollout_feedback_total", counted) == 1
        unknown = pod.post("/feedback", json={"token": token, "labels": [7]})
        assert unknown.status_code == 422
        assert "['0', '1', '2']" in unknown.json["error"]["message"], unknown.json


def test_a_tampered_or_foreign_token_is_refused_with_the_field() -> None:
    client = create_app(model(), ServingConfig(), ApiKeys(), CollectorRegistry()).test_client()
    token = client.post("/invocations", json={"instances": [[0.9, 0]]}).headers["X-Prediction-Token"]
    head, payload, mac = token.split(".")
    forged = f"{head}.{payload[:-2]}AA.{mac}"
    refused = client.post("/feedback", json={"token": forged, "labels": [1]})
    assert refused.status_code == 400
    assert refused.json["error"]["field"] == "token"
    other_key = create_app(model(), ServingConfig(feedback_key="k2"), ApiKeys(), CollectorRegistry())
    answer = other_key.test_client().post("/feedback", json={"token": token, "labels": [1]})
    assert answer.status_code == 400
    assert "signature does not match" in answer.json["error"]["message"]

"""The real server (gunicorn, several workers) on a model registered in the real MLflow server."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from serving_harness import API_KEY, WORKERS, RunningServer

IDENTITY_HEADERS = ("X-Request-ID", "X-Model-Name", "X-Model-Version")


def rows_split(server: RunningServer) -> dict[str, Any]:
    names = server.model.feature_names
    return {"columns": names, "data": [[r[n] for n in names] for r in server.model.sample_rows]}


def scrape(server: RunningServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(server.url + "/metrics", timeout=30).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def assert_identity(response: requests.Response, server: RunningServer) -> None:
    for header in IDENTITY_HEADERS:
        assert response.headers.get(header), f"{header} missing on {response.request.url}"
    assert response.headers["X-Model-Name"] == server.model.name
    assert response.headers["X-Model-Version"] == server.model.version


# --------------------------------------------------------------------------- MLflow scoring formats
def test_every_invocations_format_matches_mlflow(
    server: RunningServer, expected_predictions: list[int]
) -> None:
    split = rows_split(server)
    rows = server.model.sample_rows
    names = server.model.feature_names
    bodies = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": split["data"]},
        "inputs-records": {"inputs": rows},
        "inputs-columnar": {"inputs": {n: [r[n] for r in rows] for n in names}},
    }
    for label, body in bodies.items():
        response = server.post("/invocations", json=body)
        assert response.status_code == 200, (label, response.text)
        assert response.json() == {"predictions": expected_predictions}, label
        assert_identity(response, server)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(names[::-1])
    writer.writerows([[r[n] for n in names[::-1]] for r in rows])
    response = server.post("/invocations", data=buffer.getvalue(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected_predictions}


def test_request_id_is_echoed_or_generated(server: RunningServer) -> None:
    body = {"dataframe_split": rows_split(server)}
    given = server.post("/invocations", json=body, headers={"X-Request-ID": "client-id-1"})
    assert given.headers["X-Request-ID"] == "client-id-1"
    generated = [server.post("/invocations", json=body).headers["X-Request-ID"] for _ in range(3)]
    assert len(set(generated)) == 3


# --------------------------------------------------------------------------- V2
def test_open_inference_protocol_endpoints(server: RunningServer, expected_predictions: list[int]) -> None:
    name, version = server.model.name, server.model.version
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").status_code == 200
    assert server.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    meta = server.get(f"/v2/models/{name}", auth=True).json()
    assert meta["name"] == name
    assert meta["versions"] == [version]
    assert [i["name"] for i in meta["inputs"]] == server.model.feature_names
    data = rows_split(server)["data"]
    body = {
        "id": "abc",
        "inputs": [{"name": "input-0", "shape": [len(data), len(data[0])], "datatype": "FP64", "data": data}],
    }
    for path in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/{version}/infer"):
        response = server.post(path, json=body)
        assert response.status_code == 200, response.text
        out = response.json()
        assert out["id"] == "abc"
        assert out["model_name"] == name
        assert out["model_version"] == version
        assert out["outputs"][0]["data"] == expected_predictions
        assert_identity(response, server)
    per_column = {
        "inputs": [
            {"name": n, "shape": [len(data)], "datatype": "FP64", "data": [r[i] for r in data]}
            for i, n in enumerate(server.model.feature_names)
        ]
    }
    assert server.post(f"/v2/models/{name}/infer", json=per_column).json()["outputs"][0]["data"] == (
        expected_predictions
    )
    assert server.post("/v2/models/other/infer", json=body).status_code == 404
    assert server.post(f"/v2/models/{name}/versions/999/infer", json=body).status_code == 404


def test_tritonclient_gets_correct_predictions(
    server: RunningServer, expected_predictions: list[int]
) -> None:
    import numpy as np
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    name = server.model.name
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(name)
    assert client.get_model_metadata(name, headers=headers)["versions"] == [server.model.version]
    data = np.array(rows_split(server)["data"], dtype=np.float32)
    requested = [
        [httpclient.InferRequestedOutput("predictions", binary_data=False)],
        [httpclient.InferRequestedOutput("predictions")],  # asks for binary output; JSON comes back
        None,
    ]
    for binary in (False, True):
        for outputs in requested:
            tensor = httpclient.InferInput("input-0", list(data.shape), "FP32")
            tensor.set_data_from_numpy(data, binary_data=binary)
            result = client.infer(name, [tensor], outputs=outputs, headers=headers)
            assert result.as_numpy("predictions").tolist() == expected_predictions, (binary, outputs)
    client.close()


# --------------------------------------------------------------------------- auth and open endpoints
def test_auth_missing_wrong_and_open_endpoints(server: RunningServer) -> None:
    body = {"dataframe_split": rows_split(server)}
    missing = server.post("/invocations", json=body, auth=False)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = server.post("/invocations", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert "not valid" in wrong.json()["error"]["message"]
    assert "nope" not in wrong.text
    assert server.post("/invocations", json=body, headers={"X-API-Key": "other-key"}).status_code == 200
    assert server.post(f"/v2/models/{server.model.name}/infer", json={}, auth=False).status_code == 401
    assert server.post("/feedback", json={}, auth=False).status_code == 401
    assert server.get(f"/v2/models/{server.model.name}").status_code == 401
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics", "/version"):
        response = server.get(path)
        assert response.status_code == 200, path
        assert_identity(response, server)
    version = server.get("/version").json()
    assert version["fastpath"] is True  # the logistic-regression pipeline has a verified numpy path
    assert version["microbatch"] is False  # so auto leaves micro-batching off
    assert (version["model"], version["version"], version["track"]) == (
        server.model.name,
        server.model.version,
        "canary",
    )
    log = server.process.log_path.read_text()
    assert API_KEY not in log
    assert "nope" not in log


# --------------------------------------------------------------------------- bad input
def bad_inputs(server: RunningServer) -> list[tuple[str, dict[str, Any], int, str]]:
    names = server.model.feature_names
    row = [server.model.sample_rows[0][n] for n in names]
    record = dict(server.model.sample_rows[0])
    name = server.model.name
    v2 = f"/v2/models/{name}/infer"

    def j(body: Any, path: str = "/invocations") -> dict[str, Any]:
        return {"path": path, "json": body}

    def raw(data: bytes | str, content_type: str | None, path: str = "/invocations") -> dict[str, Any]:
        headers = {"Content-Type": content_type} if content_type else {}
        return {"path": path, "data": data, "headers": headers}

    return [
        ("not json", raw(b"{nope", "application/json"), 400, "not valid JSON"),
        ("empty body", raw(b"", "application/json"), 400, "empty"),
        ("json array body", j([1, 2]), 400, "expected an object"),
        ("no format key", j({}), 400, "exactly one of"),
        ("two format keys", j({"instances": [row], "inputs": [row]}), 400, "exactly one of"),
        ("unknown key", j({"rows": [row]}), 400, "unknown top-level"),
        ("split not object", j({"dataframe_split": [row]}), 400, "must be an object"),
        (
            "unknown column",
            j({"dataframe_split": {"columns": [*names[:-1], "bogus"], "data": [row]}}),
            422,
            "unknown column",
        ),
        (
            "missing column",
            j({"dataframe_split": {"columns": names[:-1], "data": [row[:-1]]}}),
            422,
            "missing required column",
        ),
        ("short row", j({"instances": [row[:-2]]}), 422, "values, expected"),
        ("string value", j({"dataframe_records": [{**record, names[0]: "big"}]}), 422, "got a string"),
        ("boolean value", j({"dataframe_records": [{**record, names[1]: True}]}), 422, "got a boolean"),
        ("null value", j({"dataframe_records": [{**record, names[2]: None}]}), 422, "missing values"),
        (
            "absent key in record",
            j({"dataframe_records": [{k: v for k, v in record.items() if k != names[3]}]}),
            422,
            "missing values",
        ),
        ("nested value", j({"instances": [[[1.0], *row[1:]]]}), 422, "got an array"),
        ("no rows", j({"instances": []}), 422, "no rows"),
        ("too many rows", j({"instances": [row] * 501}), 413, "over the limit of 500 rows"),
        ("body too large", raw(b"{" + b" " * 200_001 + b"}", "application/json"), 413, "over the limit"),
        ("text/plain", raw(b"{}", "text/plain"), 415, "text/plain is not supported"),
        ("no content type", raw(b"{}", None), 415, "is not supported"),
        ("latin-1 charset", raw(b"{}", "application/json; charset=latin-1"), 415, "charset"),
        (
            "csv non-number",
            raw(",".join(names) + "\n" + ",".join(["x"] * len(names)), "text/csv"),
            422,
            "is not a number",
        ),
        ("csv unknown header", raw("a,b\n1,2\n", "text/csv"), 422, "unknown column"),
        (
            "v2 bytes datatype",
            j(
                {
                    "inputs": [
                        {"name": "x", "shape": [1, len(row)], "datatype": "BYTES", "data": ["a"] * len(row)}
                    ]
                },
                v2,
            ),
            422,
            "send it as a numeric tensor",
        ),
        (
            "v2 wrong shape",
            j({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}, v2),
            422,
            "single input tensor needs shape",
        ),
        (
            "v2 data/shape mismatch",
            j({"inputs": [{"name": "x", "shape": [2, len(row)], "datatype": "FP64", "data": row}]}, v2),
            422,
            "needs",
        ),
        ("v2 no inputs", j({"inputs": []}, v2), 400, "non-empty array"),
        (
            "v2 unknown output",
            j(
                {
                    "inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}],
                    "outputs": [{"name": "proba"}],
                },
                v2,
            ),
            422,
            "unknown output",
        ),
        (
            "feedback unknown request",
            j({"request_id": "never-seen", "labels": [1]}, "/feedback"),
            404,
            "no stored prediction",
        ),
        (
            "feedback bad label",
            j({"request_id": "x", "labels": [7], "predictions": [1]}, "/feedback"),
            422,
            "not one of the model's classes",
        ),
        (
            "feedback length mismatch",
            j({"request_id": "x", "labels": [1, 0], "predictions": [1]}, "/feedback"),
            422,
            "2 labels for 1 predictions",
        ),
        ("unknown path", {"path": "/predict", "json": {}}, 404, "no endpoint"),
    ]


def test_bad_inputs_get_the_right_4xx_with_a_clear_message(server: RunningServer) -> None:
    cases = bad_inputs(server)
    assert len(cases) >= 20
    failures = []
    for label, case, status, words in cases:
        request = dict(case)
        path = request.pop("path")
        response = server.post(path, **request)
        body = (
            response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        )
        error = body.get("error", {})
        if response.status_code != status or words not in error.get("message", ""):
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
        assert "Traceback" not in response.text
        assert_identity(response, server)
    assert not failures, "\n".join(failures)


def test_wrong_method_is_405_json(server: RunningServer) -> None:
    response = server.get("/invocations")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# --------------------------------------------------------------------------- metrics and feedback
def test_metrics_are_aggregated_across_workers(server: RunningServer) -> None:
    body = {"dataframe_split": rows_split(server)}
    before = scrape(server)
    count = 60
    for _ in range(count):  # a new connection each time, so the kernel spreads them over workers
        assert server.post("/invocations", json=body).status_code == 200
    assert server.post("/invocations", json={"dataframe_records": [{}]}).status_code == 422
    worker_files = {p.name for p in server.metrics_dir.glob("counter_*.db")}
    assert len(worker_files) >= 2, f"requests reached only {worker_files}"
    for _ in range(WORKERS):  # every worker answering the scrape sees the same totals
        after = scrape(server)
        ok = dict(
            model=server.model.name,
            model_version=server.model.version,
            track="canary",
            endpoint="invocations",
            status="200",
        )
        assert (
            total(after, "mlrollout_requests_total", **ok) - total(before, "mlrollout_requests_total", **ok)
            == count
        )
        rows = len(server.model.sample_rows)
        assert total(after, "mlrollout_rows_total") - total(before, "mlrollout_rows_total") == count * rows
        assert total(after, "mlrollout_predictions_total") - total(before, "mlrollout_predictions_total") == (
            count * rows
        )
        missing = "mlrollout_missing_values_total"
        assert (
            total(after, missing, feature=server.model.feature_names[0])
            - total(before, missing, feature=server.model.feature_names[0])
            == 1
        )
        assert total(after, "mlrollout_requests_total", endpoint="invocations", status="422") >= 1
        for stage in ("parse", "predict", "serialize"):
            assert total(after, "mlrollout_stage_duration_seconds_count", stage=stage) > 0
        assert total(after, "mlrollout_request_duration_seconds_count", endpoint="invocations") >= count
        info = total(
            after,
            "mlrollout_model_info",
            model=server.model.name,
            model_version=server.model.version,
            track="canary",
            flavor="sklearn",
        )
        assert info == 1


def test_feedback_from_any_worker_feeds_live_f1(
    server: RunningServer, expected_predictions: list[int]
) -> None:
    from sklearn.metrics import f1_score

    split = rows_split(server)
    predicted: list[int] = []
    actual: list[int] = []
    for i in range(12):
        request_id = f"fb-{uuid.uuid4().hex}"
        response = server.post(
            "/invocations", json={"dataframe_split": split}, headers={"X-Request-ID": request_id}
        )
        labels = response.json()["predictions"]
        if i % 3 == 0:
            labels = [1 - v for v in labels]  # some wrong predictions, so F1 is not trivially 1
        # A fresh connection: the label often reaches a different worker than the prediction did.
        fb = server.post("/feedback", json={"request_id": request_id, "labels": labels})
        assert fb.status_code == 200, fb.text
        assert fb.json() == {"request_id": request_id, "accepted": len(labels)}
        predicted += expected_predictions
        actual += labels
        again = server.post("/feedback", json={"request_id": request_id, "labels": labels})
        assert again.status_code == 404  # counted once
    carried = server.post("/feedback", json={"request_id": "from-client", "labels": [0], "predictions": [0]})
    assert carried.status_code == 200
    predicted.append(0)
    actual.append(0)
    samples = scrape(server)
    # The server's F1 is cumulative since start; recompute from its confusion counters and compare.
    confusion_total = total(samples, "mlrollout_feedback_total")
    assert confusion_total >= len(actual)
    f1 = total(samples, "mlrollout_live_f1", track="canary")
    cells = {
        (dict(ls)["predicted"], dict(ls)["actual"]): v
        for (n, ls), v in samples.items()
        if n == "mlrollout_feedback_total"
    }
    pred = [int(p) for (p, a), n in cells.items() for _ in range(int(n))]
    act = [int(a) for (p, a), n in cells.items() for _ in range(int(n))]
    assert f1 == pytest.approx(f1_score(act, pred, average="macro"))
    assert 0 < f1 < 1
    assert total(samples, "mlrollout_live_f1_samples", track="canary") == confusion_total


def test_counts_survive_a_worker_crash(server: RunningServer) -> None:
    """A worker killed mid-life is replaced; what it counted stays in the aggregated totals."""
    import os
    import signal
    import time
    from pathlib import Path

    def workers() -> set[int]:
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
        return {int(p) for p in children.split()}

    body = {"dataframe_split": rows_split(server)}
    for _ in range(30):
        assert server.post("/invocations", json=body).status_code == 200
    before = scrape(server)
    ok = {"endpoint": "invocations", "status": "200"}
    counted = total(before, "mlrollout_requests_total", **ok)
    original = workers()
    victim = min(original)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not (len(workers()) == WORKERS and victim not in workers()):
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.1)
    server.process.wait_http(server.url + "/readyz", timeout=60)
    after = scrape(server)
    assert total(after, "mlrollout_requests_total", **ok) == counted
    assert server.post("/invocations", json=body).status_code == 200
    assert total(scrape(server), "mlrollout_requests_total", **ok) == counted + 1


def test_concurrent_requests_each_get_their_own_prediction(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many clients at once (so workers micro-batch them): every answer matches MLflow's for that row."""
    from concurrent.futures import ThreadPoolExecutor

    import mlflow.pyfunc
    from support.mlflow_models import load_dataset

    frame, _, names = load_dataset("breast_cancer")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # for MLflow's own loader, here
    oracle = mlflow.pyfunc.load_model(server.model.model_uri)
    expected = [int(v) for v in oracle.predict(frame[names])]
    assert 0 < sum(expected) < len(expected)  # both classes occur, so a mix-up would show
    rows = frame[names].to_numpy().tolist()
    session_auth = {"Authorization": f"Bearer {API_KEY}"}

    def score(i: int) -> tuple[int, list[int]]:
        response = requests.post(
            server.url + "/invocations",
            json={"dataframe_split": {"columns": names, "data": [rows[i]]}},
            headers=session_auth,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return i, response.json()["predictions"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = dict(pool.map(score, range(len(rows))))
    assert [answers[i][0] for i in range(len(rows))] == expected

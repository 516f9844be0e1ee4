"""The real server (gunicorn, several workers, multiprocess metrics) on string-column models registered
in the real MLflow server: a ColumnTransformer + OneHotEncoder classifier answers every input format
as MLflow's pyfunc does on the same rows, and a regressor's metrics stay in a fixed set of series."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from serving_harness import API_KEY, RunningServer
from support.mlflow_models import CATEGORICAL_COLUMNS, churn_frame


def oracle_predictions(model_uri: str, frame: Any) -> list[Any]:
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"  # for MLflow's own loader, in this process
    import mlflow.pyfunc

    return np.asarray(mlflow.pyfunc.load_model(model_uri).predict(frame)).tolist()


def bodies(frame: Any) -> dict[str, Any]:
    names = list(frame.columns)
    records = frame.to_dict(orient="records")
    rows = [[r[n] for n in names] for r in records]
    return {
        "dataframe_split": {"dataframe_split": {"columns": names, "data": rows}},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": rows},
        "inputs-records": {"inputs": records},
        "inputs-columnar": {"inputs": {n: [r[n] for r in records] for n in names}},
    }


@pytest.mark.parametrize("which", ["categorical", "regressor"])
def test_every_format_matches_mlflow_pyfunc(
    which: str, categorical_server: RunningServer, regressor_server: RunningServer
) -> None:
    server = categorical_server if which == "categorical" else regressor_server
    frame, _, _ = churn_frame(30, seed=51)
    expected = oracle_predictions(server.model.model_uri, frame)
    for label, body in bodies(frame).items():
        response = server.post("/invocations", json=body)
        assert response.status_code == 200, (label, response.text)
        assert response.json()["predictions"] == expected, label
    buffer = io.StringIO()
    csv.writer(buffer).writerows([list(frame.columns), *frame.to_numpy().tolist()])
    response = server.post("/invocations", data=buffer.getvalue(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == expected
    tensors = {
        "inputs": [
            {
                "name": n,
                "shape": [len(frame)],
                "datatype": "BYTES" if n in CATEGORICAL_COLUMNS else "FP64",
                "data": frame[n].tolist(),
            }
            for n in frame.columns
        ]
    }
    response = server.post(f"/v2/models/{server.model.name}/infer", json=tensors)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == expected
    version = server.get("/version").json()
    assert version["fastpath"] is True  # the compiled table predict, verified at load
    assert version["task"] == ("classifier" if which == "categorical" else "regressor")


def test_tritonclient_bytes_tensors(categorical_server: RunningServer) -> None:
    import tritonclient.http as httpclient

    server = categorical_server
    frame, _, _ = churn_frame(12, seed=52)
    expected = oracle_predictions(server.model.model_uri, frame)
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    meta = client.get_model_metadata(server.model.name, headers=headers)
    assert {i["name"]: i["datatype"] for i in meta["inputs"]}["plan"] == "BYTES"
    for binary in (False, True):
        inputs = []
        for name in frame.columns:
            if name in CATEGORICAL_COLUMNS:
                tensor = httpclient.InferInput(name, [len(frame)], "BYTES")
                tensor.set_data_from_numpy(frame[name].to_numpy(dtype=object), binary_data=binary)
            else:
                tensor = httpclient.InferInput(name, [len(frame)], "FP64")
                tensor.set_data_from_numpy(frame[name].to_numpy(dtype=np.float64), binary_data=binary)
            inputs.append(tensor)
        result = client.infer(server.model.name, inputs, headers=headers)
        assert result.as_numpy("predictions").tolist() == expected, binary
    client.close()


def test_bad_string_input_is_a_422_naming_the_column(categorical_server: RunningServer) -> None:
    server = categorical_server
    frame, _, _ = churn_frame(3, seed=53)
    record = frame.to_dict(orient="records")[0]
    cases = [
        ({**record, "plan": 7}, "dataframe_records[0].plan", "expected a string"),
        ({**record, "tenure_months": "7"}, "dataframe_records[0].tenure_months", "expected a number"),
        ({**record, "region": "mars-1"}, "region", "unknown category 'mars-1'"),
        ({**record, "contract": None}, "contract", "missing values"),
        ({k: v for k, v in record.items() if k != "plan"}, "plan", "missing values"),
    ]
    for body, field, words in cases:
        response = server.post("/invocations", json={"dataframe_records": [body]})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field
        assert words in error["message"]


def scrape(server: RunningServer) -> list[tuple[str, dict[str, str], float]]:
    text = requests.get(server.url + "/metrics", timeout=30).text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        if family.name.startswith("mlrollout")
        for s in family.samples
    ]


def test_regressor_series_stay_fixed_under_10000_distinct_predictions(
    regressor_server: RunningServer,
) -> None:
    server = regressor_server
    with requests.Session() as session:
        _check_series_stay_fixed(server, session)


def _check_series_stay_fixed(server: RunningServer, session: requests.Session) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def score(seed: int) -> list[float]:
        frame, _, _ = churn_frame(250, seed=seed)
        split = {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}
        response = session.post(
            server.url + "/invocations", json={"dataframe_split": split}, headers=headers, timeout=30
        )
        assert response.status_code == 200, response.text
        return list(response.json()["predictions"])

    seen = set(score(1000))
    scrape(server)  # the first scrape creates the metrics endpoint's own request series
    before = {(n, tuple(sorted(ls.items()))) for n, ls, _ in scrape(server)}
    for seed in range(1001, 1041):  # 40 requests x 250 rows = 10,000 more predictions
        seen.update(score(seed))
    assert len(seen) >= 10_000, len(seen)
    samples = scrape(server)
    after = {(n, tuple(sorted(ls.items()))) for n, ls, _ in samples}
    assert after == before, sorted(after - before)[:5]
    print(f"\n[regressor] {len(seen)} distinct predictions, {len(after)} mlrollout series on /metrics")
    assert not [n for n, _, _ in samples if n == "mlrollout_predictions_total"]
    count = sum(v for n, _, v in samples if n == "mlrollout_prediction_value_count")
    assert count >= 10_250


def test_regressor_feedback_gives_live_rmse(regressor_server: RunningServer) -> None:
    server = regressor_server
    frame, _, value = churn_frame(8, seed=61)
    squared = []
    for i in range(0, 8, 2):
        rows = frame.iloc[i : i + 2].to_dict(orient="records")
        response = server.post("/invocations", json={"dataframe_records": rows})
        predicted = response.json()["predictions"]
        labels = [float(v) for v in value.iloc[i : i + 2]]
        fb = server.post(
            "/feedback", json={"token": response.headers["X-Prediction-Token"], "labels": labels}
        )
        assert fb.status_code == 200, fb.text
        squared += [(p - a) ** 2 for p, a in zip(predicted, labels, strict=True)]
    samples = scrape(server)
    count = sum(v for n, _, v in samples if n == "mlrollout_regression_feedback_total")
    total = sum(v for n, _, v in samples if n == "mlrollout_regression_squared_error_total")
    assert count >= 8
    rmse = next(v for n, _, v in samples if n == "mlrollout_live_rmse")
    assert rmse == pytest.approx(math.sqrt(total / count))
    if count == 8:  # this test alone labelled this server's predictions
        assert rmse == pytest.approx(math.sqrt(sum(squared) / 8))

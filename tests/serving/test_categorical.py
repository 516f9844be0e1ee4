"""String columns and regressors, in process: a ColumnTransformer + OneHotEncoder pipeline saved by
MLflow answers every input format exactly as MLflow's own pyfunc loader does on the same rows (the
path `mlflow models serve` uses), bad input gets a 4xx naming the column, a regressor's metrics stay in
a fixed number of series, and its feedback feeds live RMSE."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from mlrollout.serving.app import create_app
from mlrollout.serving.auth import ApiKeys
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.loading import load_model
from mlrollout.serving.model import LoadedModel
from prometheus_client import CollectorRegistry
from support.mlflow_models import (
    CATEGORICAL_COLUMNS,
    CATEGORICAL_FRAME_COLUMNS,
    NUMERIC_COLUMNS,
    churn_frame,
    save_categorical_model,
)

KINDS = ("classifier", "ridge", "gbr")
ROWS = 40


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("categorical")
    paths = {}
    for kind in KINDS:
        paths[kind] = root / kind
        save_categorical_model(str(paths[kind]), kind)  # type: ignore[arg-type]
    return paths


@pytest.fixture(scope="module")
def loaded(saved: dict[str, Path]) -> dict[str, LoadedModel]:
    return {kind: load_model(str(path), name=f"churn-{kind}", version="3") for kind, path in saved.items()}


@pytest.fixture(scope="module")
def loaded_native(saved: dict[str, Path]) -> dict[str, LoadedModel]:
    """The same models without the fast path: scikit-learn's own predict on a DataFrame."""
    return {
        kind: load_model(str(path), name=f"churn-{kind}", version="3", fastpath=False)
        for kind, path in saved.items()
    }


# The compiled table predict covers ColumnTransformer(OneHotEncoder, StandardScaler) + a linear model;
# the tree ensemble keeps scikit-learn's predict.
FASTPATH = {"classifier": True, "ridge": True, "gbr": False}


@pytest.fixture(scope="module")
def oracle(saved: dict[str, Path]) -> dict[str, Any]:
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"  # for mlflow's own loader, in this process
    import mlflow.pyfunc

    return {kind: mlflow.pyfunc.load_model(str(path)) for kind, path in saved.items()}


def client(model: LoadedModel, registry: CollectorRegistry | None = None, **config: Any) -> Any:
    app = create_app(model, ServingConfig(**config), ApiKeys(), registry or CollectorRegistry())
    return app.test_client()


def request_bodies(frame: Any) -> dict[str, tuple[str, Any]]:
    """The same rows in every format the server accepts: (path, JSON body or raw CSV bytes)."""
    names = list(frame.columns)
    records = frame.to_dict(orient="records")
    rows = [[r[n] for n in names] for r in records]
    backwards = names[::-1]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(backwards)
    writer.writerows([[r[n] for n in backwards] for r in records])

    def tensor(name: str) -> dict[str, Any]:
        string = name in CATEGORICAL_COLUMNS
        return {
            "name": name,
            "shape": [len(rows)],
            "datatype": "BYTES" if string else "FP64",
            "data": [r[name] for r in records],
        }

    return {
        "dataframe_split": ("/invocations", {"dataframe_split": {"columns": names, "data": rows}}),
        "dataframe_split-reordered": (
            "/invocations",
            {"dataframe_split": {"columns": backwards, "data": [[r[n] for n in backwards] for r in records]}},
        ),
        "dataframe_split-positional": ("/invocations", {"dataframe_split": {"data": rows}}),
        "dataframe_records": ("/invocations", {"dataframe_records": records}),
        "instances-rows": ("/invocations", {"instances": rows}),
        "instances-records": ("/invocations", {"instances": records}),
        "inputs-rows": ("/invocations", {"inputs": rows}),
        "inputs-records": ("/invocations", {"inputs": records}),
        "inputs-columnar": ("/invocations", {"inputs": {n: [r[n] for r in records] for n in names}}),
        "csv": ("/invocations", buffer.getvalue().encode()),
        "v2-per-column": ("infer", {"inputs": [tensor(n) for n in backwards]}),
    }


def predictions_of(response: Any, path: str) -> list[Any]:
    assert response.status_code == 200, response.json
    body = response.json
    return body["outputs"][0]["data"] if path == "infer" else body["predictions"]


def post(c: Any, model: LoadedModel, path: str, body: Any, **headers: str) -> Any:
    if path == "infer":
        return c.post(f"/v2/models/{model.name}/infer", json=body, headers=headers)
    if isinstance(body, bytes):
        return c.post(path, data=body, headers={"Content-Type": "text/csv", **headers})
    return c.post(path, json=body, headers=headers)


@pytest.mark.parametrize("fast", [True, False], ids=["fastpath", "native"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_format_answers_what_mlflow_pyfunc_answers(
    kind: str,
    fast: bool,
    loaded: dict[str, LoadedModel],
    loaded_native: dict[str, LoadedModel],
    oracle: dict[str, Any],
) -> None:
    model = (loaded if fast else loaded_native)[kind]
    assert model.extra == {"fastpath": fast and FASTPATH[kind], "frame": True}
    frame, _, _ = churn_frame(ROWS, seed=11)
    expected = np.asarray(oracle[kind].predict(frame)).tolist()
    assert len(set(expected)) > 1  # a mix-up of rows or columns would show
    c = client(model)
    for label, (path, body) in request_bodies(frame).items():
        got = predictions_of(post(c, model, path, body), path)
        assert got == expected, label  # exact: the same float64 values, not approximately
    one = predictions_of(
        post(c, model, "/invocations", {"dataframe_records": frame.head(1).to_dict("records")}), ""
    )
    assert one == expected[:1]
    assert c.get("/version").json["fastpath"] is (fast and FASTPATH[kind])
    for i in range(0, ROWS, 7):  # single rows, each alone as a one-row request
        row = frame.iloc[i : i + 1]
        got = predictions_of(
            post(c, model, "/invocations", {"dataframe_records": row.to_dict("records")}), ""
        )
        assert got == np.asarray(oracle[kind].predict(row)).tolist(), i


def test_v2_binary_bytes_tensors_as_tritonclient_sends_them(
    loaded: dict[str, LoadedModel], oracle: dict[str, Any]
) -> None:
    from tritonclient.utils import serialize_byte_tensor

    model = loaded["classifier"]
    frame, _, _ = churn_frame(ROWS, seed=12)
    expected = np.asarray(oracle["classifier"].predict(frame)).tolist()
    inputs, parts = [], []
    for name in CATEGORICAL_FRAME_COLUMNS:
        if name in CATEGORICAL_COLUMNS:
            raw = serialize_byte_tensor(np.array([v.encode() for v in frame[name]], dtype=object)).item()
            datatype = "BYTES"
        else:
            raw = frame[name].to_numpy(dtype="<f8").tobytes()
            datatype = "FP64"
        inputs.append(
            {
                "name": name,
                "shape": [ROWS],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        parts.append(raw)
    head = orjson.dumps({"inputs": inputs})
    response = client(model).post(
        f"/v2/models/{model.name}/infer",
        data=head + b"".join(parts),
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert predictions_of(response, "infer") == expected
    meta = client(model).get(f"/v2/models/{model.name}").json
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        **{n: "BYTES" for n in CATEGORICAL_COLUMNS},
        **{n: "FP64" for n in NUMERIC_COLUMNS},
    }


def bad_requests(frame: Any) -> list[tuple[str, str, Any, int, str, str]]:
    """(label, path, body, status, field, words in the message)."""
    records = frame.to_dict(orient="records")
    record = records[0]
    names = CATEGORICAL_FRAME_COLUMNS
    row = [record[n] for n in names]
    without = [n for n in names if n != "region"]

    def tensor(name: str, datatype: str, data: list[Any]) -> dict[str, Any]:
        return {"name": name, "shape": [len(data)], "datatype": datatype, "data": data}

    good_tensors = [
        tensor(n, "BYTES" if n in CATEGORICAL_COLUMNS else "FP64", [record[n]]) for n in names if n != "plan"
    ]
    return [
        (
            "number in a string column",
            "/invocations",
            {"dataframe_records": [{**record, "plan": 3}]},
            422,
            "dataframe_records[0].plan",
            "expected a string",
        ),
        (
            "string in a number column",
            "/invocations",
            {"dataframe_records": [{**record, "tenure_months": "12"}]},
            422,
            "dataframe_records[0].tenure_months",
            "expected a number",
        ),
        (
            "boolean in a string column",
            "/invocations",
            {"instances": [[True, *row[1:]]]},
            422,
            "instances[0].plan",
            "expected a string",
        ),
        (
            "missing column",
            "/invocations",
            {"dataframe_split": {"columns": without, "data": [[record[n] for n in without]]}},
            422,
            "dataframe_split.columns",
            "missing required column(s) ['region']",
        ),
        (
            "null in a string column",
            "/invocations",
            {"dataframe_records": [records[1], {**record, "contract": None}]},
            422,
            "contract",
            "missing values in required column(s) {'contract': 1} (first at row 1)",
        ),
        (
            "absent key in a record",
            "/invocations",
            {"dataframe_records": [{k: v for k, v in record.items() if k != "region"}]},
            422,
            "region",
            "missing values",
        ),
        (
            "null in a number column",
            "/invocations",
            {"dataframe_records": [{**record, "monthly_charges": None}]},
            422,
            "monthly_charges",
            "missing values",
        ),
        (
            "unknown category",
            "/invocations",
            {"dataframe_records": [records[1], {**record, "region": "mars-1"}]},
            422,
            "region",
            "column 'region' row 1: unknown category 'mars-1'; the model was trained on",
        ),
        (
            "unknown category, other case",
            "/invocations",
            {"inputs": {n: [record[n] if n != "plan" else "Basic"] for n in names}},
            422,
            "plan",
            "unknown category 'Basic'",
        ),
        (
            "csv unknown category",
            "/invocations",
            (b"plan,tenure_months,region,monthly_charges,contract\nbasic,3,eu-west,20,weekly\n"),
            422,
            "contract",
            "unknown category 'weekly'",
        ),
        (
            "csv text in a number column",
            "/invocations",
            (b"plan,tenure_months,region,monthly_charges,contract\nbasic,three,eu-west,20,monthly\n"),
            422,
            "csv[1].tenure_months",
            "is not a number",
        ),
        (
            "csv empty string cell",
            "/invocations",
            (b"plan,tenure_months,region,monthly_charges,contract\n,3,eu-west,20,monthly\n"),
            422,
            "plan",
            "missing values",
        ),
        (
            "v2 numeric tensor for a string column",
            "infer",
            {"inputs": [*good_tensors, tensor("plan", "FP64", [1.0])]},
            422,
            "inputs[4].datatype",
            "column 'plan' is a string column; send it as a BYTES tensor",
        ),
        (
            "v2 bytes tensor for a number column",
            "infer",
            {
                "inputs": [
                    tensor("plan", "BYTES", ["basic"]),
                    *[
                        t if t["name"] != "tenure_months" else tensor("tenure_months", "BYTES", ["3"])
                        for t in good_tensors
                    ],
                ]
            },
            422,
            "inputs[1].datatype",
            "column 'tenure_months' is double",
        ),
        (
            "v2 number in a bytes tensor",
            "infer",
            {"inputs": [tensor("plan", "BYTES", [7]), *good_tensors]},
            422,
            "inputs[0].data[0].plan",
            "expected a string",
        ),
        (
            "v2 one tensor for mixed columns",
            "infer",
            {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "BYTES", "data": [str(v) for v in row]}]},
            422,
            "inputs[0].datatype",
            "send one tensor per column",
        ),
        (
            "v2 unknown category",
            "infer",
            {"inputs": [tensor("plan", "BYTES", ["gold"]), *good_tensors]},
            422,
            "plan",
            "unknown category 'gold'",
        ),
        ("v2 missing column", "infer", {"inputs": good_tensors}, 422, "inputs", "['plan']"),
    ]


def test_bad_input_gets_a_4xx_naming_the_column(loaded: dict[str, LoadedModel]) -> None:
    frame, _, _ = churn_frame(4, seed=13)
    failures = []
    for kind in ("classifier", "gbr"):
        model = loaded[kind]
        c = client(model)
        for label, path, body, status, field, words in bad_requests(frame):
            response = post(c, model, path, body)
            error = (response.json or {}).get("error", {})
            if (response.status_code, error.get("field")) != (status, field) or words not in error.get(
                "message", ""
            ):
                failures.append(f"{kind} {label}: {response.status_code} {response.json}")
    assert not failures, "\n".join(failures)


def test_an_unknown_category_the_encoder_would_ignore_is_served(tmp_path: Path) -> None:
    """handle_unknown='ignore': an unseen value is the model's business (all-zero one-hot), as in MLflow."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, churn, _ = churn_frame(300, seed=3)
    prep = ColumnTransformer(
        [
            ("c", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL_COLUMNS),
            ("n", StandardScaler(), NUMERIC_COLUMNS),
        ]
    )
    pipeline = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=300))]).fit(frame, churn)
    mlflow.sklearn.save_model(
        pipeline, str(tmp_path / "m"), signature=infer_signature(frame.head(), churn.head())
    )
    model = load_model(str(tmp_path / "m"))
    assert model.categories == {}
    unseen = {**frame.iloc[0].to_dict(), "region": "mars-1"}
    response = client(model).post("/invocations", json={"dataframe_records": [unseen]})
    assert response.status_code == 200
    import pandas as pd

    assert response.json["predictions"] == pipeline.predict(pd.DataFrame([unseen])).tolist()


# --------------------------------------------------------------------------- regressors
def series(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in registry.collect()
        if family.name.startswith("mlrollout")
        for s in family.samples
    }


def test_a_regressors_metrics_stay_in_a_fixed_number_of_series(loaded: dict[str, LoadedModel]) -> None:
    model = loaded["ridge"]
    assert model.task == "regressor"
    registry = CollectorRegistry()
    c = client(model, registry)
    frame, _, _ = churn_frame(100, seed=21)
    split = {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}
    first = c.post("/invocations", json={"dataframe_split": split})
    assert first.status_code == 200
    baseline = series(registry)
    seen: set[float] = set(first.json["predictions"])
    for seed in range(22, 122):  # 100 requests x 100 rows: 10,000 distinct predicted values
        frame, _, _ = churn_frame(100, seed=seed)
        response = c.post(
            "/invocations",
            json={"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}},
        )
        assert response.status_code == 200
        seen.update(response.json["predictions"])
    assert len(seen) >= 10_000
    after = series(registry)
    assert after == baseline, sorted(after - baseline)[:5]
    # The value histogram's 45 buckets + Inf + count + sum; with the request, stage, rows and info
    # series, the same set whatever the number of distinct predictions.
    value_series = [x for x in after if x[0].startswith("mlrollout_prediction_value")]
    assert len(value_series) == len(ServingConfig().prediction_buckets) + 3, len(value_series)
    assert len(after) <= 150, len(after)
    identity = {"model": model.name, "model_version": "3", "track": "stable"}
    assert registry.get_sample_value("mlrollout_rows_total", identity) == 10_100
    assert registry.get_sample_value("mlrollout_prediction_value_count", identity) == 10_100
    assert not [s for s in after if s[0] == "mlrollout_predictions_total"]  # no series per predicted value


def test_prediction_histogram_matches_prometheus_observe(loaded: dict[str, LoadedModel]) -> None:
    """The bulk bucket update is what one observe per value would have counted."""
    from mlrollout.serving.metrics import Identity, ServingMetrics

    values = np.array(
        [-3e5, -100.0, -0.01, 0.0, 0.004, 0.01, 0.0100001, 2.5, 99.9, 1e5, 2e5, math.nan, math.inf]
    )
    bulk, single = CollectorRegistry(), CollectorRegistry()
    ServingMetrics(Identity("m", "1", "stable"), bulk).scored_values(values)
    reference = ServingMetrics(Identity("m", "1", "stable"), single)
    for v in values[np.isfinite(values)]:
        reference.values.observe(float(v))
    assert series(bulk) == series(single)
    for family in single.collect():
        for s in family.samples:
            if s.name.startswith("mlrollout_prediction_value"):
                assert bulk.get_sample_value(s.name, s.labels) == pytest.approx(s.value), s


def test_regressor_feedback_feeds_live_rmse(loaded: dict[str, LoadedModel]) -> None:
    model = loaded["gbr"]
    registry = CollectorRegistry()
    canary = client(model, registry, track="canary")
    frame, _, value = churn_frame(6, seed=31)
    records = frame.to_dict(orient="records")
    labels = [float(v) for v in value]
    # 1. the token, through any pod: counted for the version that predicted
    response = canary.post(
        "/invocations", json={"dataframe_records": records[:3]}, headers={"X-Request-ID": "r1"}
    )
    predicted = response.json["predictions"]
    token = response.headers["X-Prediction-Token"]
    stable_registry = CollectorRegistry()
    # another pod of the same model: the stable track, serving version 2 (another regressor)
    stable = client(replace(loaded["ridge"], name=model.name, version="2"), stable_registry)
    answer = stable.post("/feedback", json={"token": token, "labels": labels[:3]})
    assert answer.status_code == 200, answer.json
    assert answer.json["model_version"] == "3"
    ident = {"model": model.name, "model_version": "3", "track": "stable"}
    token_errors = [p - a for p, a in zip(predicted, labels[:3], strict=True)]
    assert stable_registry.get_sample_value("mlrollout_regression_feedback_total", ident) == 3
    assert stable_registry.get_sample_value("mlrollout_regression_squared_error_total", ident) == (
        pytest.approx(sum(e * e for e in token_errors))
    )
    # 2. by request id, on the pod that answered (stored exact float64 predictions)
    response = canary.post(
        "/invocations", json={"dataframe_records": records[3:5]}, headers={"X-Request-ID": "r2"}
    )
    predicted2 = response.json["predictions"]
    assert canary.post("/feedback", json={"request_id": "r2", "labels": labels[3:5]}).status_code == 200
    assert canary.post("/feedback", json={"request_id": "r2", "labels": labels[3:5]}).status_code == 404
    # 3. predictions sent with the labels
    assert (
        canary.post("/feedback", json={"request_id": "x", "label": 10, "prediction": 12.5}).status_code == 200
    )
    errors = [p - a for p, a in zip([*predicted2, 12.5], [*labels[3:5], 10.0], strict=True)]
    ident = {"model": model.name, "model_version": "3", "track": "canary"}
    assert registry.get_sample_value("mlrollout_regression_feedback_total", ident) == 3
    assert registry.get_sample_value("mlrollout_regression_squared_error_total", ident) == pytest.approx(
        sum(e * e for e in errors)
    )
    assert registry.get_sample_value("mlrollout_regression_absolute_error_total", ident) == pytest.approx(
        sum(abs(e) for e in errors)
    )
    page = canary.get("/metrics").text
    rmse = math.sqrt(sum(e * e for e in errors) / 3)
    line = next(x for x in page.splitlines() if x.startswith("mlrollout_live_rmse{"))
    assert float(line.split()[-1]) == pytest.approx(rmse)
    assert 'mlrollout_live_error_samples{model="churn-gbr",model_version="3",track="canary"} 3.0' in page
    # bad labels: 422 naming the label
    for bad in (["12"], [True], [None], [[1.0]]):
        refused = canary.post("/feedback", json={"request_id": "y", "labels": bad, "predictions": [1.0]})
        assert refused.status_code == 422, (bad, refused.json)
        assert refused.json["error"]["field"] == "labels[0]"
    assert "finite number" in refused.json["error"]["message"]
    refused = canary.post("/feedback", json={"request_id": "y", "labels": [1e308], "predictions": [-1e308]})
    assert refused.status_code == 422
    token_feedback = stable.post("/feedback", json={"token": token, "labels": ["a", "b", "c"]})
    assert token_feedback.status_code == 422


def test_classifier_with_string_columns_keeps_class_metrics_and_tokens(
    loaded: dict[str, LoadedModel],
) -> None:
    model = loaded["classifier"]
    assert (model.task, model.classes) == ("classifier", (0, 1))
    registry = CollectorRegistry()
    c = client(model, registry)
    frame, churn, _ = churn_frame(8, seed=41)
    response = c.post("/invocations", json={"dataframe_records": frame.to_dict("records")})
    assert response.status_code == 200
    assert (
        c.post(
            "/feedback", json={"token": response.headers["X-Prediction-Token"], "labels": churn.tolist()}
        ).status_code
        == 200
    )
    ident = {"model": model.name, "model_version": "3", "track": "stable"}
    counted = sum(
        registry.get_sample_value("mlrollout_predictions_total", {**ident, "class": k}) or 0 for k in "01"
    )
    assert counted == 8
    assert registry.get_sample_value("mlrollout_prediction_value_count", ident) == 0

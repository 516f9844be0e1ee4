"""Unit tests of the Open Inference Protocol (V2) request parsing and response encoding."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from mlrollout.serving.errors import BadRequest, SchemaViolation
from mlrollout.serving.parsing import Limits
from mlrollout.serving.schema import Column, InputSchema
from mlrollout.serving.v2 import infer_response, parse_infer

SCHEMA = InputSchema((Column("a", "double"), Column("b", "double")))
LIMITS = Limits(max_rows=10)


def infer(payload: object, binary: bytes = b""):
    head = orjson.dumps(payload)
    return parse_infer(head + binary, str(len(head)) if binary else None, SCHEMA, LIMITS)


def test_single_matrix_tensor_flat_and_nested() -> None:
    flat = infer({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]})
    nested = infer(
        {"id": "r1", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}]}
    )
    np.testing.assert_array_equal(flat.batch.values, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(nested.batch.values, [[1, 2], [3, 4]])
    assert nested.id == "r1"


def test_per_column_tensors_in_any_order() -> None:
    request = infer(
        {
            "inputs": [
                {"name": "b", "shape": [2], "datatype": "FP64", "data": [2, 4]},
                {"name": "a", "shape": [2, 1], "datatype": "INT64", "data": [1, 3]},
            ]
        }
    )
    np.testing.assert_array_equal(request.batch.values, [[1, 2], [3, 4]])


def test_binary_tensor_extension() -> None:
    data = np.array([[1, 2], [3, 4]], dtype="<f4")
    request = infer(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": data.nbytes},
                }
            ]
        },
        data.tobytes(),
    )
    np.testing.assert_array_equal(request.batch.values, [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("payload", "error", "field"),
    [
        ({"inputs": []}, BadRequest, "inputs"),
        (
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]},
            SchemaViolation,
            "inputs[0].datatype",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
            SchemaViolation,
            "inputs[0].shape",
        ),
        (
            {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}]},
            SchemaViolation,
            "inputs[0].data",
        ),
        (
            {"inputs": [{"name": "x", "shape": "2", "datatype": "FP64", "data": [1, 2]}]},
            BadRequest,
            "inputs[0].shape",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]},
            SchemaViolation,
            "inputs",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, "2"]}]},
            SchemaViolation,
            "inputs[0].data[0].b",
        ),
        (
            {"inputs": [{"name": "x", "shape": [11, 2], "datatype": "FP64", "data": [1] * 22}]},
            Exception,
            "inputs[0].shape",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}],
                "outputs": [{"name": "probabilities"}],
            },
            SchemaViolation,
            "outputs[0].name",
        ),
        (
            {"id": 5, "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]},
            BadRequest,
            "id",
        ),
    ],
)
def test_bad_v2_requests(payload: object, error: type, field: str) -> None:
    with pytest.raises(error) as caught:
        infer(payload)
    assert getattr(caught.value, "field", None) == field


def test_binary_size_mismatch_is_refused() -> None:
    with pytest.raises(BadRequest, match="binary_data_size must be 16"):
        infer(
            {
                "inputs": [
                    {"name": "x", "shape": [1, 2], "datatype": "FP64", "parameters": {"binary_data_size": 8}}
                ]
            },
            b"\0" * 8,
        )


def test_response_shape() -> None:
    body = orjson.loads(infer_response("m", "3", "r1", np.array([0, 1])))
    assert body == {
        "model_name": "m",
        "model_version": "3",
        "id": "r1",
        "outputs": [{"name": "predictions", "datatype": "INT64", "shape": [2], "data": [0, 1]}],
    }

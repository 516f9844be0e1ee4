"""Unit tests of request parsing and signature checks (pure: bytes and JSON in, matrix or error out)."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from mlrollout.serving.errors import BadRequest, PayloadTooLarge, SchemaViolation, UnsupportedMediaType
from mlrollout.serving.parsing import (
    Limits,
    check_body_size,
    check_media_type,
    parse_csv,
    parse_invocations_json,
    validate,
)
from mlrollout.serving.schema import Column, InputSchema, SchemaError

SCHEMA = InputSchema(
    (
        Column("a", "double"),
        Column("b", "double"),
        Column("n", "long"),
        Column("opt", "double", required=False),
    )
)
LIMITS = Limits(max_body_bytes=10_000, max_rows=5)
EXPECTED = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, math.nan]])


def parse(payload: object):
    return parse_invocations_json(payload, SCHEMA, LIMITS)


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["a", "b", "n", "opt"], "data": [[1, 2, 3, 4], [5, 6, 7, None]]}},
        {"dataframe_split": {"columns": ["opt", "n", "b", "a"], "data": [[4, 3, 2, 1], [None, 7, 6, 5]]}},
        {"dataframe_split": {"data": [[1, 2, 3, 4], [5, 6, 7, None]], "index": [0, 1]}},
        {"dataframe_records": [{"a": 1, "b": 2, "n": 3, "opt": 4}, {"n": 7, "a": 5, "b": 6}]},
        {"instances": [[1, 2, 3, 4], [5.0, 6.0, 7, None]]},
        {"instances": [{"a": 1, "b": 2, "n": 3, "opt": 4}, {"a": 5, "b": 6, "n": 7}]},
        {"inputs": {"a": [1, 5], "b": [2, 6], "n": [3, 7], "opt": [4, None]}},
        {"inputs": [[1, 2, 3, 4], [5, 6, 7, None]]},
    ],
    ids=[
        "split",
        "split-reordered",
        "split-positional",
        "records",
        "instances-rows",
        "instances-records",
        "inputs-columnar",
        "inputs-rows",
    ],
)
def test_every_json_format_gives_the_same_matrix(payload: object) -> None:
    batch = parse(payload)
    np.testing.assert_array_equal(batch.values, EXPECTED)
    assert batch.missing_counts(SCHEMA) == {"opt": 1}
    validate(batch, SCHEMA)  # a missing optional value is allowed


def test_csv_with_header_in_any_order() -> None:
    batch = parse_csv(b"b,a,n,opt\n2,1,3,4\n6,5,7,\n", SCHEMA, LIMITS)
    np.testing.assert_array_equal(batch.values, EXPECTED)


@pytest.mark.parametrize(
    ("payload", "error", "field", "words"),
    [
        ([1, 2], BadRequest, "body", "expected an object"),
        ({}, BadRequest, "body", "exactly one of"),
        ({"instances": [], "inputs": []}, BadRequest, "body", "exactly one of"),
        ({"rows": []}, BadRequest, "rows", "unknown top-level"),
        ({"dataframe_split": []}, BadRequest, "dataframe_split", "must be an object"),
        ({"dataframe_split": {"columns": ["a"]}}, BadRequest, "dataframe_split.data", "array of rows"),
        (
            {"dataframe_split": {"data": [[1, 2, 3]]}},
            SchemaViolation,
            "dataframe_split.data[0]",
            "has 3 values",
        ),
        (
            {"dataframe_split": {"columns": ["a", "a", "b", "n"], "data": []}},
            SchemaViolation,
            "dataframe_split.columns",
            "more than once",
        ),
        (
            {"dataframe_split": {"columns": ["a", "b", "zz"], "data": [[1, 2, 3]]}},
            SchemaViolation,
            "dataframe_split.columns",
            "unknown column",
        ),
        (
            {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}},
            SchemaViolation,
            "dataframe_split.columns",
            "missing required column",
        ),
        (
            {"dataframe_records": [{"a": 1, "b": "x", "n": 1}]},
            SchemaViolation,
            "dataframe_records[0].b",
            "got a string",
        ),
        (
            {"dataframe_records": [{"a": 1, "b": True, "n": 1}]},
            SchemaViolation,
            "dataframe_records[0].b",
            "got a boolean",
        ),
        (
            {"dataframe_records": [{"a": 1, "b": 2, "n": 1, "x": 0}]},
            SchemaViolation,
            "dataframe_records[0]",
            "unknown column",
        ),
        ({"dataframe_records": [5]}, BadRequest, "dataframe_records[0]", "expected an object"),
        ({"instances": [1, 2, 3]}, BadRequest, "instances[0]", "must be an array"),
        ({"instances": []}, SchemaViolation, "instances", "no rows"),
        ({"instances": [[1, 2, 3, 4]] * 6}, PayloadTooLarge, "instances", "over the limit of 5 rows"),
        ({"inputs": {"a": [1], "b": [2, 3], "n": [1]}}, SchemaViolation, "inputs", "different lengths"),
        ({"instances": [[1, [2], 3, 4]]}, SchemaViolation, "instances[0].b", "got an array"),
        ({"instances": [[1, 2, 10**400, 4]]}, SchemaViolation, "instances", "too large"),
    ],
)
def test_bad_json_input_names_field_and_problem(payload: object, error: type, field: str, words: str) -> None:
    with pytest.raises(error) as caught:
        parse(payload)
    assert caught.value.field == field
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("rows", "field", "words"),
    [
        ([[1, None, 3, 4]], "b", "missing values in required column(s) {'b': 1}"),
        ([[1, 2, 3.5, 4]], "n", "is not an integer"),
    ],
)
def test_validate_refuses_missing_required_and_non_integers(rows: list, field: str, words: str) -> None:
    batch = parse({"instances": rows})
    with pytest.raises(SchemaViolation) as caught:
        validate(batch, SCHEMA)
    assert caught.value.field == field
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (b"", BadRequest, "empty"),
        (b"a,b,n\n1,x,3\n", SchemaViolation, "'x' is not a number"),
        (b"a,b,n\n1,inf,3\n", SchemaViolation, "not finite"),
        (b"a,b,n\n1,2\n", SchemaViolation, "has 2 values"),
        (b"a,b\n1,2\n", SchemaViolation, "missing required column"),
        (b"\xff\xfe,a\n", BadRequest, "not UTF-8"),
        (b"a,b,n\n", SchemaViolation, "no rows"),
    ],
)
def test_bad_csv(body: bytes, error: type, words: str) -> None:
    with pytest.raises(error) as caught:
        parse_csv(body, SCHEMA, LIMITS)
    assert words in caught.value.message


def test_media_type_and_size_checks() -> None:
    assert check_media_type("Application/JSON; charset=UTF-8", frozenset({"application/json"})) == (
        "application/json"
    )
    with pytest.raises(UnsupportedMediaType, match="text/plain is not supported"):
        check_media_type("text/plain", frozenset({"application/json"}))
    with pytest.raises(UnsupportedMediaType, match="latin-1"):
        check_media_type("application/json; charset=latin-1", frozenset({"application/json"}))
    with pytest.raises(UnsupportedMediaType, match=r"\(none\)"):
        check_media_type(None, frozenset({"application/json"}))
    check_body_size(10_000, LIMITS)
    with pytest.raises(PayloadTooLarge, match="10001 bytes"):
        check_body_size(10_001, LIMITS)


def test_error_body_is_json_with_code_message_field() -> None:
    error = SchemaViolation("column 'b' row 0: got a string", field="instances[0].b")
    assert orjson.loads(orjson.dumps(error.body())) == {
        "error": {
            "code": "schema_violation",
            "message": "column 'b' row 0: got a string",
            "field": "instances[0].b",
        }
    }
    assert error.status == 422


def test_schema_from_mlflow_signature_and_refusals() -> None:
    schema = InputSchema.from_signature_inputs(
        '[{"type": "double", "name": "x", "required": true},'
        ' {"type": "long", "name": "k", "required": false}]'
    )
    assert schema.names == ("x", "k")
    assert schema.integer_positions == (1,)
    assert schema.required_positions == (0,)
    with pytest.raises(SchemaError, match="tensor-based"):
        InputSchema.from_signature_inputs('[{"type": "tensor", "tensor-spec": {}}]')
    with pytest.raises(SchemaError, match="type 'binary'"):
        InputSchema.from_signature_inputs('[{"type": "binary", "name": "s"}]')
    mixed = InputSchema.from_signature_inputs(
        '[{"type": "string", "name": "s"}, {"type": "double", "name": "x"}]'
    )
    assert (mixed.string_positions, mixed.numeric_positions, mixed.has_strings) == ((0,), (1,), True)
    with pytest.raises(SchemaError, match="repeats"):
        InputSchema((Column("x", "double"), Column("x", "double")))

"""Open Inference Protocol (KServe V2) requests and responses, as pure functions.

Inputs are either one tensor of shape [rows, columns] in signature order, or one tensor per signature
column (shape [rows] or [rows, 1]) named after the column. Tensor data may be JSON (flat or nested,
row-major) or use the binary tensor extension (`Inference-Header-Content-Length`, `binary_data_size`).
String columns travel as BYTES tensors (JSON strings, or binary elements each prefixed by its 4-byte
little-endian length, as Triton's clients send them); a model that mixes string and numeric columns
takes one tensor per column, since one tensor has one datatype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from mlrollout.serving.errors import BadRequest, SchemaViolation
from mlrollout.serving.parsing import Batch, Limits, Table, check_rows, empty_table, load_json, rows_to_matrix
from mlrollout.serving.schema import Column, InputSchema

NUMERIC_DTYPES: dict[str, str] = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
BYTES = "BYTES"
DATATYPES = frozenset(NUMERIC_DTYPES) | {BYTES}
OUTPUT_NAME = "predictions"
_LENGTH = np.dtype("<u4")


@dataclass(frozen=True)
class V2Request:
    batch: Batch
    id: str | None
    outputs: tuple[str, ...]


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes | None]:
    """Separate the JSON header from binary tensor data when the binary extension is used."""
    if header_length is None:
        return body, None
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(
            "Inference-Header-Content-Length must be an integer", field="Inference-Header-Content-Length"
        ) from None
    if not 0 < length <= len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {length} does not fit a {len(body)}-byte body",
            field="Inference-Header-Content-Length",
        )
    return body[:length], body[length:]


def parse_infer(body: bytes, header_length: str | None, schema: InputSchema, limits: Limits) -> V2Request:
    head, binary = split_binary(body, header_length)
    payload = load_json(head)
    if not isinstance(payload, dict):
        raise BadRequest("inference request must be a JSON object with 'inputs'", field="body")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("id must be a string", field="id")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("inputs must be a non-empty array of tensors", field="inputs")
    tensors = _read_tensors(inputs, binary, limits)
    matrix = _assemble(tensors, schema, limits)
    return V2Request(batch=Batch(matrix), id=request_id, outputs=_requested_outputs(payload.get("outputs")))


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: Any  # list (JSON) or ndarray (binary)
    field: str


def _read_tensors(inputs: list[Any], binary: bytes | None, limits: Limits) -> list[_Tensor]:
    tensors: list[_Tensor] = []
    offset = 0
    for i, spec in enumerate(inputs):
        field = f"inputs[{i}]"
        if not isinstance(spec, dict):
            raise BadRequest(f"{field} must be an object with name, shape, datatype, data", field=field)
        name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{field}.name must be a non-empty string", field=f"{field}.name")
        if (
            not isinstance(shape, list)
            or not 1 <= len(shape) <= 2
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise BadRequest(
                f"{field}.shape must be [rows] or [rows, columns] of non-negative integers",
                field=f"{field}.shape",
            )
        if datatype not in DATATYPES:
            raise SchemaViolation(
                f"{field}.datatype {datatype!r} is not supported; use one of {sorted(DATATYPES)}",
                field=f"{field}.datatype",
            )
        check_rows(shape[0], limits, f"{field}.shape")
        size = int(np.prod(shape))
        params = spec.get("parameters") or {}
        if not isinstance(params, dict):
            raise BadRequest(f"{field}.parameters must be an object", field=f"{field}.parameters")
        data: Any
        if "binary_data_size" in params and datatype == BYTES:
            data, offset = _binary_strings(binary, offset, params["binary_data_size"], size, field=field)
        elif "binary_data_size" in params:
            data, offset = _binary_slice(
                binary, offset, params["binary_data_size"], datatype, size, field=field
            )
        else:
            data = spec.get("data")
            if not isinstance(data, list):
                raise BadRequest(f"{field}.data must be an array", field=f"{field}.data")
            data = _flatten(data, field)
            if len(data) != size:
                raise SchemaViolation(
                    f"{field} has {len(data)} values but shape {shape} needs {size}", field=f"{field}.data"
                )
        tensors.append(_Tensor(name, tuple(shape), datatype, data, field))
    if binary is not None and offset != len(binary):
        raise BadRequest(f"binary data has {len(binary) - offset} unread bytes", field="body")
    return tensors


def _binary_slice(
    binary: bytes | None, offset: int, size_param: Any, datatype: str, size: int, *, field: str
) -> tuple[npt.NDArray[Any], int]:
    if binary is None:
        raise BadRequest(
            f"{field} declares binary_data_size but the request has no binary part",
            field=f"{field}.parameters.binary_data_size",
        )
    dtype = np.dtype(NUMERIC_DTYPES[datatype])
    if type(size_param) is not int or size_param != size * dtype.itemsize:
        raise BadRequest(
            f"{field} binary_data_size must be {size * dtype.itemsize} for its shape and datatype",
            field=f"{field}.parameters.binary_data_size",
        )
    if offset + size_param > len(binary):
        raise BadRequest(f"{field} binary data is shorter than declared", field=f"{field}.parameters")
    return np.frombuffer(binary, dtype=dtype, count=size, offset=offset), offset + size_param


def _binary_strings(
    binary: bytes | None, offset: int, size_param: Any, count: int, *, field: str
) -> tuple[list[Any], int]:
    """BYTES elements of the binary extension: each a 4-byte little-endian length, then UTF-8 text."""
    where = f"{field}.parameters.binary_data_size"
    if binary is None:
        raise BadRequest(f"{field} declares binary_data_size but the request has no binary part", field=where)
    if type(size_param) is not int or size_param < 0 or offset + size_param > len(binary):
        raise BadRequest(f"{field} binary_data_size does not fit the binary data", field=where)
    end = offset + size_param
    cursor = offset
    out: list[Any] = []
    for i in range(count):
        if cursor + _LENGTH.itemsize > end:
            raise BadRequest(f"{field} binary data holds fewer than {count} BYTES elements", field=where)
        length = int(np.frombuffer(binary, dtype=_LENGTH, count=1, offset=cursor)[0])
        cursor += _LENGTH.itemsize
        if cursor + length > end:
            raise BadRequest(f"{field} BYTES element {i} runs past binary_data_size", field=where)
        try:
            out.append(binary[cursor : cursor + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise SchemaViolation(
                f"{field} BYTES element {i} is not UTF-8 text", field=f"{field}.data"
            ) from None
        cursor += length
    if cursor != end:
        raise BadRequest(
            f"{field} binary data has {end - cursor} bytes after its {count} elements", field=where
        )
    return out, end


def _flatten(data: list[Any], field: str) -> list[Any]:
    if not data or type(data[0]) is not list:
        return data
    flat: list[Any] = []
    for row in data:
        if type(row) is not list:
            raise BadRequest(f"{field}.data mixes nested and flat values", field=f"{field}.data")
        flat.extend(_flatten(row, field))
    return flat


def _check_datatype(tensor: _Tensor, columns: list[Column]) -> None:
    """BYTES carries string columns and only those; numeric datatypes carry the other columns."""
    for column in columns:
        if column.is_string and tensor.datatype != BYTES:
            raise SchemaViolation(
                f"{tensor.field}: column {column.name!r} is a string column; send it as a BYTES tensor, "
                f"not {tensor.datatype}",
                field=f"{tensor.field}.datatype",
            )
        if not column.is_string and tensor.datatype == BYTES:
            raise SchemaViolation(
                f"{tensor.field}: column {column.name!r} is {column.type}; send it as a numeric tensor "
                "(FP64, INT64, BOOL, ...), not BYTES",
                field=f"{tensor.field}.datatype",
            )


def _values(tensor: _Tensor, columns: list[Column], rows: int) -> Table:
    _check_datatype(tensor, columns)
    if isinstance(tensor.data, np.ndarray):
        return tensor.data.astype(np.float64).reshape(rows, len(columns))
    if tensor.datatype == "BOOL":
        columns = [Column(c.name, "boolean") for c in columns]
    width = len(columns)
    grid = [tensor.data[r * width : (r + 1) * width] for r in range(rows)]
    return rows_to_matrix(grid, columns, f"{tensor.field}.data")


def _assemble(tensors: list[_Tensor], schema: InputSchema, limits: Limits) -> Table:
    if len(tensors) == 1 and (
        (len(tensors[0].shape) == 2 and tensors[0].shape[1] != 1) or tensors[0].name not in schema.positions
    ):
        tensor = tensors[0]
        if len(tensor.shape) != 2 or tensor.shape[1] != schema.width:
            raise SchemaViolation(
                f"{tensor.field} has shape {list(tensor.shape)}; a single input tensor needs shape "
                f"[rows, {schema.width}] (columns {list(schema.names)[:5]}...) or per-column tensors "
                "named after the signature columns",
                field=f"{tensor.field}.shape",
            )
        if schema.has_strings and len(schema.string_positions) != schema.width:
            raise SchemaViolation(
                f"{tensor.field}: one tensor has one datatype, but this model mixes string columns "
                f"{[schema.names[i] for i in schema.string_positions][:5]} with numeric ones; send one "
                "tensor per column named after it (BYTES for string columns)",
                field=f"{tensor.field}.datatype",
            )
        return _values(tensor, list(schema.columns), tensor.shape[0])
    names = [t.name for t in tensors]
    unknown = [n for n in names if n not in schema.positions]
    if unknown:
        raise SchemaViolation(
            f"unknown input tensor(s) {unknown[:10]}; expected {list(schema.names)}", field="inputs"
        )
    if len(set(names)) != len(names):
        raise SchemaViolation("an input tensor name is repeated", field="inputs")
    absent = [c.name for c in schema.columns if c.required and c.name not in names]
    if absent:
        raise SchemaViolation(f"missing input tensor(s) for required column(s) {absent[:10]}", field="inputs")
    rows = {t.shape[0] for t in tensors}
    if len(rows) != 1 or any(len(t.shape) == 2 and t.shape[1] != 1 for t in tensors):
        raise SchemaViolation(
            "per-column tensors must all have shape [rows] or [rows, 1] with equal rows", field="inputs"
        )
    count = rows.pop()
    out = empty_table(count, schema)
    for t in tensors:
        column = schema.columns[schema.positions[t.name]]
        out[:, schema.positions[t.name]] = _values(t, [column], count)[:, 0]
    return out


def _requested_outputs(outputs: Any) -> tuple[str, ...]:
    if outputs is None:
        return (OUTPUT_NAME,)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadRequest("outputs must be an array of objects with a name", field="outputs")
    names = tuple(o.get("name") for o in outputs)
    for i, name in enumerate(names):
        if name != OUTPUT_NAME:
            raise SchemaViolation(
                f"unknown output {name!r}; this model has output {OUTPUT_NAME!r}", field=f"outputs[{i}].name"
            )
    return names or (OUTPUT_NAME,)


def output_datatype(values: npt.NDArray[Any]) -> str:
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"


def infer_response(model: str, version: str, request_id: str | None, predictions: npt.NDArray[Any]) -> bytes:
    datatype = output_datatype(predictions)
    data: Any = predictions if datatype != "BYTES" else [str(v) for v in predictions.tolist()]
    body: dict[str, Any] = {
        "model_name": model,
        "model_version": version,
        "outputs": [{"name": OUTPUT_NAME, "datatype": datatype, "shape": [len(predictions)], "data": data}],
    }
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def input_datatype(column: Column) -> str:
    if column.is_string:
        return BYTES
    return "BOOL" if column.is_boolean else ("INT64" if column.is_integer else "FP64")


def model_metadata(
    model: str, version: str, schema: InputSchema, platform: str, output: str
) -> dict[str, Any]:
    return {
        "name": model,
        "versions": [version],
        "platform": platform,
        "inputs": [{"name": c.name, "datatype": input_datatype(c), "shape": [-1]} for c in schema.columns],
        "outputs": [{"name": OUTPUT_NAME, "datatype": output, "shape": [-1]}],
    }

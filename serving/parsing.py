"""Turn a request body into a table in the signature's column order, or a clear 4xx.

Pure functions over bytes and parsed JSON: no Flask, no pandas. A numeric signature gives a float64
matrix; a signature with string columns gives an object array whose numeric cells are floats and
whose string cells are `str`. Missing values become NaN (numbers) or None (strings) so they can be
counted per feature (for metrics) before `validate` refuses them in required columns."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from mlrollout.serving.errors import BadRequest, PayloadTooLarge, SchemaViolation, UnsupportedMediaType
from mlrollout.serving.schema import Column, InputSchema

JSON_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON_TYPES = frozenset({"application/json"})
CSV_TYPES = frozenset({"text/csv"})
_NUMERIC_CELL = frozenset({int, float, type(None)})
_LIST_ONLY = frozenset({list})
_BOOLEAN_CELL = frozenset({bool, type(None)})
_STRING_CELL = frozenset({str, type(None)})
MAX_SHOWN_CATEGORIES = 20

Matrix = npt.NDArray[np.float64]
Table = npt.NDArray[Any]  # float64 matrix, or an object array for a schema with string columns


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_rows: int = 10_000


@dataclass(frozen=True)
class Batch:
    """Parsed rows, shape (rows, schema width), NaN (or None in a string column) where a value is missing."""

    values: Table

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def numeric(self, schema: InputSchema) -> tuple[Matrix, tuple[int, ...]]:
        """The numeric columns as a float64 matrix, and their positions in the schema."""
        if self.values.dtype != object:
            return self.values, schema.numeric_positions  # no string column: every column
        positions = schema.numeric_positions
        return self.values[:, list(positions)].astype(np.float64), positions

    def missing_counts(self, schema: InputSchema) -> dict[str, int]:
        """Missing values per feature, only for features that have any."""
        numbers, positions = self.numeric(schema)
        nan = np.isnan(numbers)
        counts: dict[int, int] = {}
        if nan.any():
            counts = {positions[i]: int(n) for i, n in enumerate(nan.sum(axis=0)) if n}
        if self.values.dtype == object:
            for i in schema.string_positions:
                n = sum(1 for v in self.values[:, i] if v is None)
                if n:
                    counts[i] = n
        return {schema.names[i]: n for i, n in sorted(counts.items())}


# --------------------------------------------------------------------------- envelope
def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """'application/json; charset=UTF-8' -> ('application/json', {'charset': 'utf-8'})."""
    if not content_type:
        return "", {}
    head, *params = content_type.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if sep:
            parsed[key.strip().lower()] = value.strip().strip('"').lower()
    return head.strip().lower(), parsed


def check_media_type(content_type: str | None, allowed: frozenset[str]) -> str:
    kind, params = media_type(content_type)
    if kind not in allowed:
        shown = kind or "(none)"
        raise UnsupportedMediaType(
            f"Content-Type {shown} is not supported; use one of {sorted(allowed)}", field="Content-Type"
        )
    charset = params.get("charset", "utf-8")
    if charset not in {"utf-8", "utf8"}:
        raise UnsupportedMediaType(f"charset {charset} is not supported; use utf-8", field="Content-Type")
    return kind


def check_body_size(size: int, limits: Limits) -> None:
    if size > limits.max_body_bytes:
        raise PayloadTooLarge(
            f"request body is {size} bytes, over the limit of {limits.max_body_bytes} bytes", field="body"
        )


def load_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("request body is empty; send a JSON object", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", field="body") from None


def check_rows(count: int, limits: Limits, field: str) -> None:
    if count == 0:
        raise SchemaViolation("no rows to score; send at least one row", field=field)
    if count > limits.max_rows:
        raise PayloadTooLarge(f"{count} rows is over the limit of {limits.max_rows} rows", field=field)


# --------------------------------------------------------------------------- cells -> matrix
def rows_to_matrix(rows: Sequence[Any], columns: Sequence[Column], field: str) -> Table:
    """Rows of JSON scalars (already in `columns` order) -> float64 matrix, None becoming NaN; with a
    string column, an object array (numbers as floats, strings as str, missing strings as None)."""
    width = len(columns)
    has_bool = any(c.is_boolean for c in columns)
    has_str = any(c.is_string for c in columns)
    # Whole-table checks in C (set of row types, of row lengths, of cell types); the per-row and
    # per-cell walks only run to explain a failure.
    shape_ok = _LIST_ONLY.issuperset(map(type, rows)) and set(map(len, rows)) == {width}
    cells_ok = (
        shape_ok
        and not has_bool
        and not has_str
        and _NUMERIC_CELL.issuperset(map(type, chain.from_iterable(rows)))
    )
    if not cells_ok:
        for r, row in enumerate(rows):
            if type(row) is not list:
                raise BadRequest(
                    f"row {r} is {_json_type(row)}, expected an array of {width} values",
                    field=f"{field}[{r}]",
                )
            if len(row) != width:
                raise SchemaViolation(
                    f"row {r} has {len(row)} values, expected {width}", field=f"{field}[{r}]"
                )
            _check_cells(row, r, columns, field)
    if has_str:
        return _mixed_table(rows, columns, field)
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise SchemaViolation("a value is too large for a 64-bit float", field=field) from None
    return matrix.reshape(len(rows), width)


def _mixed_table(rows: Sequence[list[Any]], columns: Sequence[Column], field: str) -> Table:
    """Checked rows with string columns -> object array, column by column."""
    out = np.empty((len(rows), len(columns)), dtype=object)
    for j, column in enumerate(columns):
        cells = [row[j] for row in rows]
        if column.is_string:
            out[:, j] = cells
            continue
        try:
            out[:, j] = np.array(cells, dtype=np.float64)
        except OverflowError:
            raise SchemaViolation(
                f"column {column.name!r}: a value is too large for a 64-bit float", field=field
            ) from None
    return out


def _expected(column: Column) -> tuple[frozenset[object], str]:
    if column.is_boolean:
        return _BOOLEAN_CELL, "a boolean"
    if column.is_string:
        return _STRING_CELL, "a string"
    return _NUMERIC_CELL, "a number"


def _check_cells(row: list[Any], r: int, columns: Sequence[Column], field: str) -> None:
    for column, value in zip(columns, row, strict=True):
        allowed, expected = _expected(column)
        if type(value) not in allowed:
            raise SchemaViolation(
                f"column {column.name!r} row {r}: got {_json_type(value)} {_short(value)}, "
                f"expected {expected}",
                field=f"{field}[{r}].{column.name}",
            )


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def empty_table(rows: int, schema: InputSchema) -> Table:
    """A table of missing values: NaN, and None in string columns (then an object array)."""
    if not schema.has_strings:
        return np.full((rows, schema.width), np.nan)
    out = np.empty((rows, schema.width), dtype=object)
    out[:, list(schema.numeric_positions)] = np.nan
    return out  # np.empty(dtype=object) is all None


def place_columns(matrix: Table, present: Sequence[str], schema: InputSchema) -> Table:
    """Reorder columns given in another order into schema order; absent optional columns are missing."""
    if tuple(present) == schema.names:
        return matrix
    out = empty_table(matrix.shape[0], schema)
    out[:, [schema.positions[name] for name in present]] = matrix
    return out


def check_column_names(names: Any, schema: InputSchema, field: str) -> list[str]:
    if isinstance(names, list) and tuple(names) == schema.names:
        return names  # the usual request: the signature's columns, in its order
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest("columns must be an array of column-name strings", field=field)
    seen = set(names)
    if len(seen) != len(names):
        repeated = sorted(n for n, k in Counter(names).items() if k > 1)
        raise SchemaViolation(f"column(s) given more than once: {repeated}", field=field)
    unknown = [n for n in names if n not in schema.positions]
    if unknown:
        raise SchemaViolation(
            f"unknown column(s) {unknown[:10]}; the model expects {list(schema.names)}", field=field
        )
    absent = [c.name for c in schema.columns if c.required and c.name not in seen]
    if absent:
        raise SchemaViolation(f"missing required column(s) {absent[:10]}", field=field)
    return names


# --------------------------------------------------------------------------- MLflow JSON formats
def parse_invocations_json(payload: Any, schema: InputSchema, limits: Limits) -> Batch:
    if not isinstance(payload, dict):
        raise BadRequest(
            f"body is {_json_type(payload)}; expected an object with one of {list(JSON_FORMATS)}",
            field="body",
        )
    keys = [k for k in payload if k in JSON_FORMATS]
    extra = [k for k in payload if k not in JSON_FORMATS]
    if extra:
        raise BadRequest(
            f"unknown top-level key(s) {extra[:5]}; expected exactly one of {list(JSON_FORMATS)}",
            field=str(extra[0]),
        )
    if len(keys) != 1:
        raise BadRequest(f"expected exactly one of {list(JSON_FORMATS)}, got {keys or 'none'}", field="body")
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        return Batch(_parse_split(value, schema, limits))
    if key == "dataframe_records":
        return Batch(_parse_records(value, schema, limits, key))
    return Batch(_parse_instances(value, schema, limits, key))


def _parse_split(value: Any, schema: InputSchema, limits: Limits) -> Table:
    field = "dataframe_split"
    if not isinstance(value, dict):
        raise BadRequest(f"{field} must be an object with 'columns' and 'data'", field=field)
    unknown = [k for k in value if k not in {"columns", "data", "index"}]
    if unknown:
        raise BadRequest(
            f"unknown key(s) {unknown[:5]} in {field}; expected columns, data, index", field=field
        )
    data = value.get("data")
    if not isinstance(data, list):
        raise BadRequest(f"{field}.data must be an array of rows", field=f"{field}.data")
    if "columns" in value:
        names = check_column_names(value["columns"], schema, f"{field}.columns")
    else:
        names = list(schema.names)
    check_rows(len(data), limits, f"{field}.data")
    matrix = rows_to_matrix(data, schema.columns_for(names), f"{field}.data")
    return place_columns(matrix, names, schema)


def _parse_records(value: Any, schema: InputSchema, limits: Limits, field: str) -> Table:
    if not isinstance(value, list):
        raise BadRequest(f"{field} must be an array of objects keyed by column", field=field)
    check_rows(len(value), limits, field)
    names = schema.names
    name_set = schema.name_set
    rows: list[list[Any]] = []
    for r, record in enumerate(value):
        if type(record) is not dict:
            raise BadRequest(
                f"row {r} is {_json_type(record)}, expected an object keyed by column", field=f"{field}[{r}]"
            )
        if not name_set.issuperset(record):
            unknown = [k for k in record if k not in name_set]
            raise SchemaViolation(
                f"row {r} has unknown column(s) {unknown[:10]}; the model expects {list(names)}",
                field=f"{field}[{r}]",
            )
        rows.append([record.get(n) for n in names])
    return rows_to_matrix(rows, schema.columns, field)


def _parse_instances(value: Any, schema: InputSchema, limits: Limits, field: str) -> Table:
    if isinstance(value, dict):
        return _parse_columnar(value, schema, limits, field)
    if not isinstance(value, list):
        raise BadRequest(f"{field} must be an array of rows or an object of columns", field=field)
    check_rows(len(value), limits, field)
    first = value[0]
    if type(first) is dict:
        return _parse_records(value, schema, limits, field)
    if type(first) is not list:
        raise BadRequest(
            f"each element of {field} must be an array of {schema.width} values or an object keyed by "
            "column; "
            f"element 0 is {_json_type(first)}",
            field=f"{field}[0]",
        )
    return rows_to_matrix(value, schema.columns, field)


def _parse_columnar(value: dict[str, Any], schema: InputSchema, limits: Limits, field: str) -> Table:
    names = check_column_names(list(value), schema, field)
    lengths = set()
    for name in names:
        column = value[name]
        if not isinstance(column, list):
            raise BadRequest(f"{field}.{name} must be an array of values", field=f"{field}.{name}")
        lengths.add(len(column))
    if len(lengths) != 1:
        raise SchemaViolation(f"columns in {field} have different lengths: {sorted(lengths)}", field=field)
    check_rows(lengths.pop(), limits, field)
    rows = [list(r) for r in zip(*(value[n] for n in names), strict=True)]
    return place_columns(rows_to_matrix(rows, schema.columns_for(names), field), names, schema)


# --------------------------------------------------------------------------- CSV
def parse_csv(body: bytes, schema: InputSchema, limits: Limits) -> Batch:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"CSV body is not UTF-8: {exc.reason} at byte {exc.start}", field="body") from None
    try:
        table = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise BadRequest(f"CSV body cannot be parsed: {exc}", field="body") from None
    if not table:
        raise BadRequest("CSV body is empty; send a header row and at least one data row", field="body")
    names = check_column_names([h.strip() for h in table[0]], schema, "csv.header")
    data = table[1:]
    check_rows(len(data), limits, "csv")
    columns = schema.columns_for(names)
    rows = [_csv_row(cells, r, columns) for r, cells in enumerate(data, start=1)]
    return Batch(place_columns(rows_to_matrix(rows, columns, "csv"), names, schema))


def _csv_row(cells: list[str], line: int, columns: Sequence[Column]) -> list[Any]:
    if len(cells) != len(columns):
        raise SchemaViolation(
            f"CSV line {line} has {len(cells)} values, expected {len(columns)}", field=f"csv[{line}]"
        )
    out: list[Any] = []
    for column, cell in zip(columns, cells, strict=True):
        if column.is_string:
            out.append(cell if cell else None)  # verbatim: only an empty cell is missing
            continue
        text = cell.strip()
        if not text or text.lower() in {"nan", "null", "na"}:
            out.append(None)
        elif column.is_boolean:
            if text.lower() not in {"true", "false"}:
                raise SchemaViolation(
                    f"column {column.name!r} line {line}: {_short(text)} is not true/false",
                    field=f"csv[{line}].{column.name}",
                )
            out.append(text.lower() == "true")
        else:
            try:
                number = float(text)
            except ValueError:
                raise SchemaViolation(
                    f"column {column.name!r} line {line}: {_short(text)} is not a number",
                    field=f"csv[{line}].{column.name}",
                ) from None
            out.append(number if math.isfinite(number) else _not_finite(column, line))
    return out


def _not_finite(column: Column, line: int) -> float:
    raise SchemaViolation(
        f"column {column.name!r} line {line}: value is not finite", field=f"csv[{line}].{column.name}"
    )


# --------------------------------------------------------------------------- signature checks
def validate(batch: Batch, schema: InputSchema) -> None:
    """Refuse missing values in required columns, infinities, and non-integers in integer columns."""
    values, _ = batch.numeric(schema)
    names = schema.numeric_names
    finite = bool(np.isfinite(values).all())  # the common case: no missing value, no infinity
    if not finite:
        nan = np.isnan(values)
        inf = ~nan & ~np.isfinite(values)
        if inf.any():
            r, c = (int(i) for i in np.argwhere(inf)[0])
            raise SchemaViolation(f"column {names[c]!r} row {r}: value is not finite", field=names[c])
    missing: dict[str, int] = {}
    first_row = -1
    required = list(schema.numeric_required)
    if required and not finite:
        absent = np.isnan(values[:, required])
        if absent.any():
            per_column = absent.sum(axis=0)
            missing = {names[required[i]]: int(n) for i, n in enumerate(per_column) if n}
            first_row = int(np.argwhere(absent)[0][0])
    if batch.values.dtype == object:
        for p in schema.string_positions:
            if not schema.columns[p].required:
                continue
            rows = [r for r, v in enumerate(batch.values[:, p]) if v is None]
            if rows:
                missing[schema.names[p]] = len(rows)
                first_row = rows[0] if first_row < 0 else min(first_row, rows[0])
    if missing:
        ordered = {n: missing[n] for n in schema.names if n in missing}
        raise SchemaViolation(
            f"missing values in required column(s) {ordered} (first at row {first_row})",
            field=next(iter(ordered)),
        )
    integer = list(schema.numeric_integer)
    if integer:
        ints = values[:, integer]
        bad = ~np.isnan(ints) & (ints != np.round(ints))
        if bad.any():
            r, c = (int(i) for i in np.argwhere(bad)[0])
            name = names[integer[c]]
            raise SchemaViolation(f"column {name!r} row {r}: {ints[r, c]!r} is not an integer", field=name)


def is_missing(value: Any) -> bool:
    """None, or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_categories(batch: Batch, schema: InputSchema, known: Mapping[int, frozenset[Any]]) -> None:
    """Refuse values a model's encoder has never seen (an encoder with handle_unknown='error'), naming
    the column, the row and the value; `known` maps schema positions to their fitted categories."""
    for position, categories in known.items():
        cells = batch.values[:, position]
        seen = set(cells.tolist())
        unknown = {v for v in seen if not is_missing(v) and v not in categories}
        if not unknown:
            continue
        r = next(i for i, v in enumerate(cells.tolist()) if v in unknown)
        name = schema.names[position]
        value = cells[r]
        shown = sorted(str(c) for c in categories)
        more = f" and {len(shown) - MAX_SHOWN_CATEGORIES} more" if len(shown) > MAX_SHOWN_CATEGORIES else ""
        raise SchemaViolation(
            f"column {name!r} row {r}: unknown category {_short(value)}; the model was trained on "
            f"{shown[:MAX_SHOWN_CATEGORIES]}{more}",
            field=name,
        )

"""Blocks of input rows -> the table serving's model takes (signature order, serving's cell rules), and
the refusals serving makes, re-worded to name the file, line and column.

pandas' C parser reads a block (it is in the serving image; the Python csv module is ~10x slower for
files). The cell rules are serving's CSV rules (serving/parsing.py `_csv_row`): in a numeric or boolean
column an empty cell, nan, null or na is missing; in a string column only an empty cell is. Columns the
model does not read are ignored (an id or label column is common in files); a required column that is
absent is refused. The checks on the parsed table are serving's own (`validate`, `check_categories`)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from mlrollout.serving.batch.errors import BatchInputError
from mlrollout.serving.errors import ServingError
from mlrollout.serving.parsing import Batch, check_categories, check_column_names, validate
from mlrollout.serving.schema import InputSchema

Table = npt.NDArray[Any]
# Serving's CSV missing markers for numeric/boolean cells, compared case-insensitively there.
MISSING_MARKERS = ("", "nan", "NaN", "NAN", "Nan", "null", "NULL", "Null", "na", "NA", "Na")
_ROW = re.compile(r"\brow (\d+)")
_ROW_WORDS = re.compile(r"\s*\(first at row \d+\)|\s*\brow \d+")


@dataclass(frozen=True)
class Layout:
    """Where the model's columns (and the id column) are in the file's header."""

    header: tuple[str, ...]
    present: tuple[str, ...]  # the model's columns found in the header, in header order
    id_column: str | None

    @classmethod
    def of(cls, header: Sequence[str], schema: InputSchema, id_column: str | None, source: str) -> Layout:
        names = list(header)
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise BatchInputError(source, f"the header repeats column(s) {repeated}", line=1)
        present = [n for n in names if n in schema.positions]
        try:
            check_column_names(present, schema, "header")
        except ServingError as exc:
            raise BatchInputError(source, f"header: {exc.message}", line=1) from None
        if id_column is not None and id_column not in names:
            raise BatchInputError(
                source, f"the id column {id_column!r} is not in the header {names[:20]}", line=1
            )
        return cls(header=tuple(names), present=tuple(present), id_column=id_column)


def read_block(data: bytes, layout: Layout, schema: InputSchema) -> Any:
    """The block as a DataFrame of the model's columns (typed) and the id column (text, verbatim)."""
    import pandas as pd

    dtypes: dict[str, Any] = {}
    na_values: dict[str, Sequence[str]] = {}
    for name in layout.present:
        column = schema.columns[schema.positions[name]]
        if column.is_string or column.is_boolean:
            dtypes[name] = object
        else:
            dtypes[name] = np.float64
        na_values[name] = [""] if column.is_string else MISSING_MARKERS
    usecols = list(layout.present)
    if layout.id_column is not None and layout.id_column not in dtypes:
        dtypes[layout.id_column] = object
        na_values[layout.id_column] = []
        usecols.append(layout.id_column)
    options: dict[str, Any] = {
        "header": None,
        "names": list(layout.header),
        "usecols": usecols,
        "keep_default_na": False,
        "na_values": na_values,
        "skip_blank_lines": True,
        "engine": "c",
    }
    try:
        return pd.read_csv(io.BytesIO(data), dtype=dtypes, **options)
    except ValueError:
        # A cell that is not a number: read the block as text and name the first such cell.
        return pd.read_csv(io.BytesIO(data), dtype=object, **options)


def to_table(
    frame: Any, layout: Layout, schema: InputSchema, source: str, line_of: Callable[[int], int]
) -> tuple[Table, list[str] | None]:
    """The model's table in signature order (absent optional columns missing) and the ids, or a
    BatchInputError naming the line and column of the first cell serving would refuse."""
    rows = len(frame)
    columns: list[npt.NDArray[Any]] = []
    for column in schema.columns:
        if column.name not in layout.present:
            columns.append(np.full(rows, None if column.is_string else np.nan, dtype=object))
            continue
        series = frame[column.name]
        if column.is_string:
            values = series.to_numpy(dtype=object)
            missing = series.isna().to_numpy()
            if missing.any():
                values = values.copy()
                values[missing] = None
            columns.append(values)
        elif column.is_boolean:
            columns.append(_booleans(series, column.name, source, line_of))
        else:
            columns.append(_numbers(series, column.name, source, line_of))
    if schema.has_strings:
        table: Table = np.empty((rows, schema.width), dtype=object)
        for i, values in enumerate(columns):
            table[:, i] = values
    else:
        table = np.column_stack(columns).astype(np.float64, copy=False) if columns else np.empty((rows, 0))
    ids = None if layout.id_column is None else [str(v) for v in frame[layout.id_column].tolist()]
    return table, ids


def _numbers(series: Any, name: str, source: str, line_of: Callable[[int], int]) -> npt.NDArray[Any]:
    if series.dtype == np.float64:
        return np.asarray(series.to_numpy(), dtype=np.float64)
    import pandas as pd

    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna().to_numpy() & series.notna().to_numpy()
    if bad.any():
        r = int(np.argmax(bad))
        raise BatchInputError(
            source, f"column {name!r}: {_short(series.iloc[r])} is not a number", line=line_of(r), column=name
        )
    return np.asarray(numbers.to_numpy(dtype=np.float64), dtype=np.float64)


def _booleans(series: Any, name: str, source: str, line_of: Callable[[int], int]) -> npt.NDArray[Any]:
    text = series.str.strip().str.lower()
    out = np.where(text == "true", 1.0, np.where(text == "false", 0.0, np.nan))
    bad = np.isnan(out) & series.notna().to_numpy()
    if bad.any():
        r = int(np.argmax(bad))
        raise BatchInputError(
            source,
            f"column {name!r}: {_short(series.iloc[r])} is not true/false",
            line=line_of(r),
            column=name,
        )
    return np.asarray(out, dtype=np.float64)


def check(
    table: Table,
    schema: InputSchema,
    categories: Mapping[int, frozenset[Any]],
    source: str,
    line_of: Callable[[int], int],
) -> None:
    """Serving's signature and category checks; their 'row r' becomes the file's line."""
    batch = Batch(table)
    try:
        validate(batch, schema)
        if categories:
            check_categories(batch, schema, categories)
    except ServingError as exc:
        match = _ROW.search(exc.message)
        line = line_of(int(match.group(1))) if match else None
        message = _ROW_WORDS.sub("", exc.message)
        raise BatchInputError(source, message, line=line, column=exc.field) from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

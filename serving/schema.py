"""The model's input schema, taken from its MLflow signature: column names, order, types, requiredness.

Column-based (tabular) signatures with numeric (double, float, long, integer), boolean and string
columns are served; a signature with any string column is "mixed" and its rows reach the model as a
DataFrame with MLflow's column dtypes (see model.to_frame). Tensor signatures and other column types
(binary, datetime, arrays, objects) are refused at load time."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FLOAT_TYPES = frozenset({"double", "float"})
INTEGER_TYPES = frozenset({"long", "integer"})
BOOLEAN_TYPES = frozenset({"boolean"})
STRING_TYPES = frozenset({"string"})
SUPPORTED_TYPES = FLOAT_TYPES | INTEGER_TYPES | BOOLEAN_TYPES | STRING_TYPES


class SchemaError(ValueError):
    """The model's signature cannot be served (found at load time, never per request)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = True
    # From `type`, once: requests read them for every column.
    is_integer: bool = field(init=False, compare=False, repr=False)
    is_boolean: bool = field(init=False, compare=False, repr=False)
    is_string: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_integer", self.type in INTEGER_TYPES)
        object.__setattr__(self, "is_boolean", self.type in BOOLEAN_TYPES)
        object.__setattr__(self, "is_string", self.type in STRING_TYPES)


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[Column, ...]
    # Derived lookups, computed once so requests never rebuild them.
    names: tuple[str, ...] = field(init=False)
    positions: Mapping[str, int] = field(init=False)
    name_set: frozenset[str] = field(init=False)
    integer_positions: tuple[int, ...] = field(init=False)
    boolean_positions: tuple[int, ...] = field(init=False)
    required_positions: tuple[int, ...] = field(init=False)
    string_positions: tuple[int, ...] = field(init=False)
    numeric_positions: tuple[int, ...] = field(init=False)  # every non-string column
    # The same, indexed within numeric_positions (the columns of Batch.numeric's matrix).
    numeric_names: tuple[str, ...] = field(init=False)
    numeric_required: tuple[int, ...] = field(init=False)
    numeric_integer: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise SchemaError("the model signature has no input columns")
        names = tuple(c.name for c in self.columns)
        if len(set(names)) != len(names):
            raise SchemaError(f"the model signature repeats input column names: {names}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "positions", {n: i for i, n in enumerate(names)})
        object.__setattr__(self, "name_set", frozenset(names))
        object.__setattr__(
            self, "integer_positions", tuple(i for i, c in enumerate(self.columns) if c.is_integer)
        )
        object.__setattr__(
            self, "boolean_positions", tuple(i for i, c in enumerate(self.columns) if c.is_boolean)
        )
        object.__setattr__(
            self, "required_positions", tuple(i for i, c in enumerate(self.columns) if c.required)
        )
        object.__setattr__(
            self, "string_positions", tuple(i for i, c in enumerate(self.columns) if c.is_string)
        )
        numeric = tuple(i for i, c in enumerate(self.columns) if not c.is_string)
        object.__setattr__(self, "numeric_positions", numeric)
        object.__setattr__(self, "numeric_names", tuple(names[p] for p in numeric))
        object.__setattr__(
            self, "numeric_required", tuple(i for i, p in enumerate(numeric) if self.columns[p].required)
        )
        object.__setattr__(
            self, "numeric_integer", tuple(i for i, p in enumerate(numeric) if self.columns[p].is_integer)
        )

    def columns_for(self, names: Sequence[str]) -> Sequence[Column]:
        """The columns of known `names`, in that order (the schema's own tuple for its own order)."""
        if tuple(names) == self.names:
            return self.columns
        return [self.columns[self.positions[n]] for n in names]

    @property
    def has_strings(self) -> bool:
        """Rows of this schema are object arrays (numbers as floats, strings as str, None missing)."""
        return bool(self.string_positions)

    @property
    def width(self) -> int:
        return len(self.columns)

    @classmethod
    def from_signature_inputs(cls, inputs: str | Sequence[Mapping[str, Any]]) -> InputSchema:
        """Build from the `signature.inputs` value of an MLmodel file (a JSON string or its parsed list)."""
        specs = json.loads(inputs) if isinstance(inputs, str) else inputs
        if not isinstance(specs, list) or not specs:
            raise SchemaError("the model signature inputs are not a non-empty list of column specs")
        columns: list[Column] = []
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise SchemaError(f"signature input #{i} is not an object")
            kind = spec.get("type")
            if kind == "tensor":
                raise SchemaError(
                    "tensor-based signatures are not supported; log the model with a column schema"
                )
            if kind not in SUPPORTED_TYPES:
                raise SchemaError(
                    f"signature input #{i} ({spec.get('name')!r}) has type {kind!r}; "
                    f"supported: {sorted(SUPPORTED_TYPES)}"
                )
            name = spec.get("name")
            if not isinstance(name, str) or not name:
                raise SchemaError(f"signature input #{i} has no column name")
            columns.append(Column(name=name, type=str(kind), required=bool(spec.get("required", True))))
        return cls(columns=tuple(columns))

    @classmethod
    def from_feature_names(cls, names: Sequence[str]) -> InputSchema:
        """For models logged without a signature but fitted on named float columns."""
        return cls(columns=tuple(Column(name=str(n), type="double") for n in names))

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "type": c.type, "required": c.required} for c in self.columns]

"""Property-based fuzzing of the real server: generated requests never get a 5xx, and every 4xx is a
JSON error with a message. Bounded: a fixed number of examples, each with a request timeout.

Two models: the numeric breast-cancer pipeline, and a churn pipeline with string columns
(ColumnTransformer + OneHotEncoder(handle_unknown='error')), for which cells also come from the
known categories, near misses of them and odd text, and V2 requests carry per-column BYTES tensors
in JSON and in the binary extension."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_harness import API_KEY, RunningServer

EXAMPLES = 2_000
STRING_EXAMPLES = 3_000
ODD_TEXT = ["", " ", "basic ", "BASIC", "mars-1", "null", "NaN", "1.5", "\x00", "é", "a,b", 'q"uote', "\n"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def request_strategy(server: RunningServer, strings: Sequence[str] = ()) -> st.SearchStrategy[dict[str, Any]]:
    names = server.model.feature_names
    rows = [[r[n] for n in names] for r in server.model.sample_rows]
    cell = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.integers(-1000, 1000),
        json_values,
        *([st.sampled_from([*strings, *ODD_TEXT])] if strings else []),
    )
    column_names = st.lists(st.one_of(st.sampled_from(names), st.text(max_size=6)), max_size=len(names) + 2)

    # With string columns, most rows keep their shape and get at most one odd cell, so that many
    # requests pass the envelope checks and reach the cell checks, the category check and the model.
    mutations = st.sampled_from([0, 0, 0, 1, 1, 2, 3]) if strings else st.integers(0, 3)

    @st.composite
    def mutated_row(draw: st.DrawFn) -> list[Any]:
        row = list(draw(st.sampled_from(rows)))
        for _ in range(draw(mutations)):
            action = draw(st.sampled_from(["set", "drop", "add"]))
            if action == "set" and row:
                row[draw(st.integers(0, len(row) - 1))] = draw(cell)
            elif action == "drop" and row:
                row.pop(draw(st.integers(0, len(row) - 1)))
            else:
                row.append(draw(cell))
        return row

    table = st.lists(mutated_row(), min_size=0, max_size=4)
    invocation = st.one_of(
        st.builds(
            lambda c, d: {"dataframe_split": {"columns": c, "data": d}},
            st.one_of(st.just(names), column_names),
            table,
        ),
        st.builds(lambda d: {"dataframe_split": {"data": d}}, table),
        st.builds(lambda d: {"instances": d}, st.one_of(table, json_values)),
        st.builds(lambda d: {"inputs": d}, st.one_of(table, json_values)),
        st.builds(lambda rs: {"dataframe_records": [dict(zip(names, r, strict=False)) for r in rs]}, table),
        st.dictionaries(
            st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "params", "x"]),
            json_values,
            max_size=3,
        ),
        json_values,
    )
    tensor = st.fixed_dictionaries(
        {
            "name": st.one_of(st.just("input-0"), st.sampled_from(names), st.text(max_size=5)),
            "shape": st.one_of(st.lists(st.integers(-1, 40), max_size=3), json_values),
            "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "FP16", "UINT8", "X"]),
            "data": st.one_of(st.lists(cell, max_size=40), table, json_values),
        },
        optional={"parameters": st.one_of(st.just({"binary_data_size": 8}), json_values)},
    )
    string_columns = {n for n, v in server.model.sample_rows[0].items() if isinstance(v, str)}

    @st.composite
    def column_tensors(draw: st.DrawFn) -> dict[str, Any]:
        """One tensor per column, mostly with the right datatype, from (mutated) rows."""
        table_rows = draw(st.lists(st.sampled_from(rows), min_size=1, max_size=4))
        tensors = []
        for j, name in enumerate(names):
            if draw(st.integers(0, 19)) == 0:
                continue  # a missing column
            right = "BYTES" if name in string_columns else "FP64"
            datatype = draw(st.one_of(st.just(right), st.sampled_from(["BYTES", "FP64", "INT64", "BOOL"])))
            data = [draw(cell) if draw(st.integers(0, 9)) == 0 else row[j] for row in table_rows]
            tensors.append({"name": name, "shape": [len(data)], "datatype": datatype, "data": data})
        return {"inputs": draw(st.permutations(tensors))}

    infer = st.one_of(
        st.fixed_dictionaries(
            {"inputs": st.lists(tensor, max_size=3)}, optional={"id": json_values, "outputs": json_values}
        ),
        *([column_tensors()] if string_columns else []),
        json_values,
    )
    feedback = st.one_of(
        st.fixed_dictionaries(
            {"request_id": st.one_of(st.text(max_size=10), json_values)},
            optional={"labels": json_values, "label": json_values, "predictions": json_values},
        ),
        json_values,
    )
    path_and_body = st.one_of(
        st.tuples(st.just("/invocations"), invocation),
        st.tuples(st.just(f"/v2/models/{server.model.name}/infer"), infer),
        st.tuples(st.just("/feedback"), feedback),
    )
    if strings:  # as many again of well-formed envelopes around (mostly) plausible rows
        plausible = st.one_of(
            st.builds(
                lambda rs: {"dataframe_records": [dict(zip(names, r, strict=False)) for r in rs]}, table
            ),
            st.builds(lambda d: {"dataframe_split": {"columns": names, "data": d}}, table),
            st.builds(lambda d: {"instances": d}, table),
        )
        path_and_body = st.one_of(
            path_and_body,
            st.tuples(st.just("/invocations"), plausible),
            st.tuples(st.just(f"/v2/models/{server.model.name}/infer"), column_tensors()),
        )
    content_type = st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/csv",
            "text/plain",
            "",
            "application/json; charset=latin-1",
        ]
    )

    @st.composite
    def binary_bytes(draw: st.DrawFn) -> dict[str, Any]:
        """V2 binary extension with BYTES elements (4-byte length + text), sizes right or wrong."""
        count = draw(st.integers(0, 3))
        inputs, parts = [], []
        for name in names:
            if name in string_columns:
                values = [draw(st.sampled_from([*strings, *ODD_TEXT])).encode() for _ in range(count)]
                raw = b"".join(struct.pack("<I", len(v)) + v for v in values)
                datatype = "BYTES"
            else:
                raw = struct.pack(f"<{count}d", *(float(draw(st.integers(0, 100))) for _ in range(count)))
                datatype = "FP64"
            if draw(st.integers(0, 4)) == 0:
                raw = draw(st.one_of(st.binary(max_size=24), st.just(raw[:-1]), st.just(raw + b"\0")))
            size = draw(st.one_of(st.just(len(raw)), st.integers(-2, 40)))
            shape = draw(st.one_of(st.just([count]), st.lists(st.integers(0, 4), max_size=2)))
            inputs.append(
                {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}
            )
            parts.append(raw)
        head = _dumps({"inputs": inputs})
        return {
            "path": f"/v2/models/{server.model.name}/infer",
            "data": head + b"".join(parts),
            "headers": {
                "Authorization": f"Bearer {API_KEY}",
                "Inference-Header-Content-Length": str(
                    draw(st.one_of(st.just(len(head)), st.integers(-1, 300)))
                ),
            },
        }

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        if string_columns and draw(st.integers(0, 7)) == 0:
            return draw(binary_bytes())
        path, body = draw(path_and_body)
        kind = draw(content_type)
        if strings and draw(st.booleans()):
            kind = draw(st.sampled_from(["application/json", "text/csv"]))
        if kind == "text/csv":
            lines = [",".join(map(str, r if isinstance(r, list) else [r])) for r in draw(table)]
            data = "\n".join([",".join(draw(st.one_of(st.just(names), column_names))), *lines]).encode()
        elif draw(st.integers(0, 9)) == 0:
            data = draw(st.binary(max_size=64))
        else:
            data = _dumps(body)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        if kind:
            headers["Content-Type"] = kind
        return {"path": path, "data": data, "headers": headers}

    return build()


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value, allow_nan=False, default=str).encode()


def test_generated_requests_never_get_a_5xx(server: RunningServer) -> None:
    fuzz(server, request_strategy(server), EXAMPLES)


def test_generated_requests_with_string_columns_never_get_a_5xx(categorical_server: RunningServer) -> None:
    from support.mlflow_models import CATEGORIES

    strings = sorted({c for values in CATEGORIES.values() for c in values})
    seen = fuzz(categorical_server, request_strategy(categorical_server, strings), STRING_EXAMPLES)
    print(f"\n[fuzz, string columns] {sum(seen.values())} requests by status: {dict(sorted(seen.items()))}")
    assert seen.get(422, 0) > 0


def fuzz(server: RunningServer, strategy: st.SearchStrategy[dict[str, Any]], examples: int) -> dict[int, int]:
    session = requests.Session()
    seen: dict[int, int] = {}
    sent = 0

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(request: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1
        response = session.post(
            server.url + request["path"], data=request["data"], headers=request["headers"], timeout=15
        )
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (request, response.status_code, response.text[:300])
        assert "X-Request-ID" in response.headers
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"], error
            assert "Traceback" not in response.text

    try:
        check()
    finally:
        session.close()
    assert sent >= examples
    assert seen.get(200, 0) > 0, f"no generated request was valid: {seen}"
    assert sum(seen.values()) == sent
    return seen

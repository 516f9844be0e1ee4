"""Property-based fuzzing of the real server: generated requests never get a 5xx, and every 4xx is a
JSON error with a message. Bounded: a fixed number of examples, each with a request timeout."""

from __future__ import annotations

from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_harness import API_KEY, RunningServer

EXAMPLES = 2_000

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


def request_strategy(server: RunningServer) -> st.SearchStrategy[dict[str, Any]]:
    names = server.model.feature_names
    rows = [[r[n] for n in names] for r in server.model.sample_rows]
    cell = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=64), st.integers(-1000, 1000), json_values
    )
    column_names = st.lists(st.one_of(st.sampled_from(names), st.text(max_size=6)), max_size=len(names) + 2)

    @st.composite
    def mutated_row(draw: st.DrawFn) -> list[Any]:
        row = list(draw(st.sampled_from(rows)))
        for _ in range(draw(st.integers(0, 3))):
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
    infer = st.one_of(
        st.fixed_dictionaries(
            {"inputs": st.lists(tensor, max_size=3)}, optional={"id": json_values, "outputs": json_values}
        ),
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
    def build(draw: st.DrawFn) -> dict[str, Any]:
        path, body = draw(path_and_body)
        kind = draw(content_type)
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
    session = requests.Session()
    seen: dict[int, int] = {}
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(request_strategy(server))
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

    check()
    session.close()
    assert sent >= EXAMPLES
    assert seen.get(200, 0) > 0, f"no generated request was valid: {seen}"
    assert sum(seen.values()) == sent

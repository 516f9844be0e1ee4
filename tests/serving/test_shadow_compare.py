"""Pure parts of shadow mode: the comparison of two answers and the settings file's validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlrollout.serving.shadow_compare import UnreadableAnswer, compare, predictions_of, same
from mlrollout.serving.shadow_settings import SettingsFile, ShadowSettings, ShadowSettingsError


@pytest.mark.parametrize(
    ("stable", "shadow", "tolerance", "agree"),
    [
        (1, 1, 0.0, True),
        (1, 0, 0.0, False),
        ("yes", "yes", 0.0, True),
        ("yes", "no", 0.0, False),
        (1, "1", 0.0, True),  # a label is its text: an int class and its JSON string agree
        (100.0, 100.5, 0.01, True),  # 0.5 <= 0.01 * 100.5
        (100.0, 102.0, 0.01, False),
        (0.0, 0.0, 0.0, True),
        (1e-9, -1e-9, 0.5, False),  # a sign flip is never within a relative tolerance < 1
        (float("nan"), float("nan"), 0.1, True),
        (float("nan"), 1.0, 0.1, False),
        (True, 1, 0.0, False),  # booleans are labels, not numbers: "True" vs 1
    ],
)
def test_same_row(stable: object, shadow: object, tolerance: float, agree: bool) -> None:
    assert same(stable, shadow, tolerance) is agree


def test_compare_rows_and_refuses_other_row_counts() -> None:
    assert compare([1, 0, 1], [1, 1, 1], 0.0) == [True, False, True]
    with pytest.raises(UnreadableAnswer, match="2 rows for 3"):
        compare([1, 0, 1], [1, 1], 0.0)


def test_predictions_of_both_protocols() -> None:
    assert predictions_of(b'{"predictions": [1, 0]}', "/invocations") == [1, 0]
    v2 = b'{"model_name":"m","outputs":[{"name":"predict","datatype":"INT64","shape":[2],"data":[0,1]}]}'
    assert predictions_of(v2, "/v2/models/m/infer") == [0, 1]
    for body in (b"not json", b"[1]", b'{"error": {"code": "x"}}'):
        with pytest.raises(UnreadableAnswer):
            predictions_of(body, "/invocations")


def test_settings_parse_with_defaults() -> None:
    s = ShadowSettings.parse({"target": "http://churn-shadow.ml:8080", "version": "8", "percent": 50})
    assert s == ShadowSettings("churn-shadow.ml", 8080, "8", 50.0, 1.0, 1e-6, False)
    assert ShadowSettings.parse({"percent": 0}) is None  # shadow off needs nothing else


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"target": "http://a:1", "version": "2", "percent": 101}, "percent must be a number in"),
        ({"target": "http://a:1", "version": "2", "percent": "50"}, "percent must be a number in"),
        ({"target": "https://a:1", "version": "2", "percent": 5}, "must be http://host"),
        ({"target": "http://a:1/x", "version": "2", "percent": 5}, "with no path"),
        ({"version": "2", "percent": 5}, "target must be"),
        ({"target": "http://a:1", "percent": 5}, "version must be"),
        ({"target": "http://a:1", "version": "2", "percent": 5, "timeoutMs": 0}, "timeoutMs"),
        ({"target": "http://a:1", "version": "2", "percent": 5, "tolerance": -1}, "tolerance"),
        ({"target": "http://a:1", "version": "2", "percent": 5, "recordInputs": "yes"}, "recordInputs"),
    ],
)
def test_settings_refused_naming_the_field(payload: dict[str, object], message: str) -> None:
    with pytest.raises(ShadowSettingsError, match=message):
        ShadowSettings.parse(payload)


def test_settings_file_follows_changes_and_keeps_the_last_good_settings(tmp_path: Path) -> None:
    path = tmp_path / "shadow.json"
    source = SettingsFile(str(path))
    assert source.refresh() is None  # no file: no shadow
    path.write_text(json.dumps({"target": "http://a:81", "version": "3", "percent": 10}))
    good = source.refresh()
    assert good is not None
    assert good.percent == 10
    path.write_text('{"target": "http://a:81", "version": "3", "percent": 1000}')
    assert source.refresh() == good  # a bad edit changes nothing
    assert source.error is not None
    assert "percent" in source.error
    path.write_text("")
    assert source.refresh() is None
    assert source.error is None

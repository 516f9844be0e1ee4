"""`kubectl mlrollout diff` (pure parts): which pods are asked, how their samples merge, the table."""

from __future__ import annotations

from typing import Any

import pytest
from mlrollout.operator.plugin.diff import merge, stable_pods, table


def pod(name: str, track: str, *, app: str = "mlrollout-serving", phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {"app.kubernetes.io/name": app, "mlrollout.io/track": track},
        },
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 9000}]}]},
        "status": {"phase": phase},
    }


def test_only_running_stable_serving_pods_are_asked() -> None:
    pods = [
        pod("s1", "stable"),
        pod("s0", "stable"),
        pod("c1", "canary"),
        pod("x1", "canary", app="mlrollout-shadow"),  # the shadow pods answer copies, compare nothing
        pod("s2", "stable", phase="Pending"),
    ]
    assert stable_pods(pods) == [("ml", "s0", 9000), ("ml", "s1", 9000)]


def row(time: str, rid: str, **extra: Any) -> dict[str, Any]:
    return {
        "time": time,
        "requestId": rid,
        "row": 0,
        "stableVersion": "1",
        "stablePrediction": 1,
        "shadowVersion": "2",
        "shadowPrediction": 0,
        **extra,
    }


def test_samples_merge_newest_first_across_pods() -> None:
    answers = {
        "s0": {"disagreements": [row("2026-01-01T00:00:02.000Z", "a"), row("2026-01-01T00:00:00.000Z", "b")]},
        "s1": {"disagreements": [row("2026-01-01T00:00:01.000Z", "c")]},
        "s2": {"shadow": None, "disagreements": []},
    }
    merged = merge(answers, 2)
    assert [(r["requestId"], r["pod"]) for r in merged] == [("a", "s0"), ("c", "s1")]


def test_table_shows_inputs_only_when_recorded() -> None:
    plain = table([row("2026-01-01T00:00:02.000Z", "a")])
    assert plain.splitlines() == [
        "TIME                      REQUEST ID  ROW  STABLE  SHADOW",
        "2026-01-01T00:00:02.000Z  a           0    v1: 1   v2: 0",
    ]
    wide = table([row("t", "a", input={"x": 0.5, "name": "y" * 80}), row("t", "b")])
    header, first, second = wide.splitlines()
    assert header.endswith("INPUT")
    assert first.endswith("…")
    assert len(first[first.index("{") :]) == 60
    assert second.endswith("-")


def test_diff_is_a_plugin_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    from mlrollout.operator.plugin import COMMANDS, main

    assert COMMANDS["diff"].reads  # so it takes -o json|yaml
    assert main(["diff", "--help"]) == 0
    assert "--limit" in capsys.readouterr().out

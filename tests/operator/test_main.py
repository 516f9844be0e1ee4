"""The operator's command line: peering replicas never start with equal priorities (kopf would
pause both, and nothing would reconcile)."""

from __future__ import annotations

import pytest
from mlrollout.operator.__main__ import draw_priority, parse_args


def test_standalone_has_no_priority() -> None:
    args = parse_args(["--standalone"])
    assert args.standalone
    assert args.priority is None


def test_peering_replicas_draw_distinct_priorities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLROLLOUT_PEERING_PRIORITY", raising=False)
    draws = {parse_args(["--peering", "mlrollout"]).priority for _ in range(10)}
    assert len(draws) == 10  # 10 replicas, 10 different priorities (a tie has p < 3e-6)
    assert all(isinstance(p, int) and p >= 1 for p in draws)


@pytest.mark.parametrize(
    ("argv", "env", "priority"),
    [(["--priority", "7"], None, 7), ([], "42", 42), (["--priority", "3"], "42", 3)],
)
def test_a_given_priority_wins(
    argv: list[str], env: str | None, priority: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv("MLROLLOUT_PEERING_PRIORITY", raising=False)
    else:
        monkeypatch.setenv("MLROLLOUT_PEERING_PRIORITY", env)
    assert parse_args(argv).priority == priority
    assert draw_priority(None) >= 1

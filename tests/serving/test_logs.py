"""The serving log format: the cached-second formatter writes exactly what logging.Formatter writes."""

from __future__ import annotations

import logging

from mlrollout.serving.logs import FORMAT, SecondCachedFormatter


def record(created: float, message: str = "POST /invocations 200 0.52ms rid=abc") -> logging.LogRecord:
    r = logging.LogRecord("mlrollout.access", logging.INFO, "", 0, message, None, None)
    r.created, r.msecs = created, (created - int(created)) * 1000
    return r


def test_lines_match_the_standard_formatter_within_and_across_seconds() -> None:
    ours, standard = SecondCachedFormatter(), logging.Formatter(FORMAT)
    # Within one second (cached), into the next, back to an earlier one (out of order threads).
    for created in (1_790_000_000.001, 1_790_000_000.999, 1_790_000_001.5, 1_790_000_000.25, 1_790_003_600.0):
        assert ours.format(record(created)) == standard.format(record(created))


def test_an_explicit_date_format_is_honoured() -> None:
    r = record(1_790_000_000.5)
    assert SecondCachedFormatter().formatTime(r, "%Y") == logging.Formatter(FORMAT).formatTime(r, "%Y")

"""The serving log format: the cached-second formatter writes exactly what logging.Formatter writes;
the buffered access log writes every line once, in order, from the process that logged it."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import pytest
from mlrollout.serving.logs import (
    ACCESS_MESSAGE,
    FORMAT,
    AccessLog,
    BufferedLineHandler,
    SecondCachedFormatter,
    flush_interval,
)


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


def buffered(stream: TextIO, interval: float = 60.0, max_bytes: int = 1 << 20) -> logging.Logger:
    handler = BufferedLineHandler(stream, interval=interval, max_bytes=max_bytes)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"test.buffered.{id(handler)}")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    return logger


def test_lines_wait_in_the_buffer_and_reach_the_stream_in_order_on_flush() -> None:
    stream = io.StringIO()
    log = buffered(stream)
    for i in range(3):
        log.info("GET /ping 200 rid=%d", i)
    assert stream.getvalue() == ""  # no write per line
    log.handlers[0].flush()
    assert stream.getvalue() == "GET /ping 200 rid=0\nGET /ping 200 rid=1\nGET /ping 200 rid=2\n"


def test_the_flusher_writes_within_its_interval_and_early_when_the_buffer_fills() -> None:
    stream = io.StringIO()
    buffered(stream, interval=0.05).info("late by at most 50 ms")
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue() == "late by at most 50 ms\n"
    full = io.StringIO()
    log = buffered(full, interval=60, max_bytes=100)
    for _ in range(10):
        log.info("x" * 20)  # 210 bytes > 100: the flusher is woken long before its 60 s
    deadline = time.monotonic() + 5
    while full.getvalue().count("\n") < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert full.getvalue().count("\n") >= 5


def test_a_forked_child_writes_its_own_lines_and_never_the_parents(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with path.open("a", buffering=1) as stream:
        log = buffered(stream)
        log.info("parent before fork")
        pid = os.fork()
        if pid == 0:  # the child: log, write, leave without running the parent's exit handlers
            log.info("child")
            log.handlers[0].flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        log.info("parent after fork")
        log.handlers[0].flush()
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(path.read_text().splitlines()) == ["child", "parent after fork", "parent before fork"]


def test_the_flush_interval_setting_is_checked() -> None:
    assert (flush_interval(None), flush_interval(" "), flush_interval("0"), flush_interval("1.5")) == (
        0.2,
        0.2,
        0.0,
        1.5,
    )
    for bad in ("soon", "-1", "61"):
        with pytest.raises(ValueError, match=rf"MLROLLOUT_ACCESS_LOG_FLUSH_SECONDS='{bad}' is not a number"):
            flush_interval(bad)


def test_gunicorn_lines_still_carry_their_pid_after_configure() -> None:
    """configure() stops records looking up their pid; gunicorn's own format prints it, and each of its
    lines (worker booted, exiting, timeouts) was a "--- Logging error ---" traceback instead."""
    script = (
        "import os, sys\n"
        "from gunicorn.config import Config\n"
        "from gunicorn.glogging import Logger\n"
        "from mlrollout.serving import logs\n"
        "logs.configure('INFO')\n"
        "cfg = Config(); cfg.set('errorlog', '-'); cfg.set('loglevel', 'info')\n"
        "Logger(cfg).info('Worker exiting (pid: %s)', 7278)\n"
        "print(os.getpid())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    pid = done.stdout.strip()
    assert "Logging error" not in done.stderr, done.stderr
    assert f"[{pid}] [INFO] Worker exiting (pid: 7278)" in done.stderr, done.stderr


def access_logger(stream: TextIO) -> tuple[logging.Logger, BufferedLineHandler]:
    """A logger set up the way configure() sets up mlrollout.access (a fresh name: no global state)."""
    handler = BufferedLineHandler(stream, interval=60)
    handler.setFormatter(SecondCachedFormatter())
    logger = logging.getLogger(f"test.access.{id(handler)}")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    return logger, handler


def test_the_access_line_is_the_one_logging_writes_without_going_through_logging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    logger, handler = access_logger(stream)
    for created in (1_790_000_000.0, 1_790_000_000.4567, 1_790_000_001.999):
        monkeypatch.setattr(time, "time", lambda created=created: created)  # logging's clock and ours
        logger.info(ACCESS_MESSAGE, "POST", "/invocations", 200, 0.5249, "rid-1")
        with monkeypatch.context() as m:
            m.setattr(logger, "info", lambda *a, **k: pytest.fail("took logging's path"))
            AccessLog(logger).write("POST", "/invocations", 200, 0.5249, "rid-1")
    handler.flush()
    by_logging, direct = stream.getvalue().splitlines()[0::2], stream.getvalue().splitlines()[1::2]
    assert direct == by_logging
    assert direct[1].endswith(",456 INFO " + logger.name + " POST /invocations 200 0.52ms rid=rid-1")


def test_a_set_up_of_the_users_own_goes_through_logging() -> None:
    stream, theirs = io.StringIO(), io.StringIO()
    logger, handler = access_logger(stream)
    seen: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return True

    logger.addFilter(keep)  # a filter of theirs sees every line
    AccessLog(logger).write("POST", "/feedback", 400, 1.0, "a")
    logger.removeFilter(keep)
    logger.addHandler(logging.StreamHandler(theirs))  # so does a handler of theirs
    AccessLog(logger).write("POST", "/feedback", 200, 1.0, "b")
    logger.handlers = [handler]
    logger.setLevel(logging.WARNING)  # and their level
    AccessLog(logger).write("POST", "/feedback", 200, 1.0, "c")
    handler.flush()
    assert seen == ["POST /feedback 400 1.00ms rid=a"]
    assert theirs.getvalue() == "POST /feedback 200 1.00ms rid=b\n"
    assert [line.rsplit("rid=", 1)[1] for line in stream.getvalue().splitlines()] == ["a", "b"]

"""Logging for `mlrollout-serve` and its shadow relay: one line format, made cheap enough to write a line
per request (the access log is on by default, and it was a tenth of a worker's busy time under load).

Python's logging HOWTO ("Optimization") names what a record gathers that a format may never show: the
caller's file and line (a stack walk per record), thread, process and multiprocessing names. Our
format shows none of them, so they are turned off (gunicorn's own lines print the pid: a filter on
its logger looks that up for them alone); and the timestamp is rendered once per second, not
once per line (time.localtime + strftime were a third of a line's cost).

The access log is written in batches (`BufferedLineHandler`): a write per request is a system call
that drops the GIL, and under load a thread that drops the GIL waits for it behind the other request
threads, so the line cost far more than its formatting. Envoy buffers its access log the same way
(flushed every second by default); here lines reach stderr within `MLROLLOUT_ACCESS_LOG_FLUSH_SECONDS`
(0.2 s; 0 writes every line as it comes), and a clean exit writes what is left."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TextIO, cast

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class SecondCachedFormatter(logging.Formatter):
    """`logging.Formatter` with the default asctime (`2026-12-02 19:30:01,123`), its date and time
    part computed once per second of record time."""

    def __init__(self, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self._stamp: tuple[int, str] = (-1, "")  # replaced whole, so threads never see half of it

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.asctime(record.created, record.msecs)

    def asctime(self, created: float, msecs: float) -> str:
        """The default asctime of a record made at `created` (seconds) with `msecs` (as LogRecord has it)."""
        second = int(created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = (second, time.strftime(self.default_time_format, self.converter(created)))
            self._stamp = stamp
        return f"{stamp[1]},{int(msecs):03d}"


class BufferedLineHandler(logging.Handler):
    """Formats each record when it is logged and writes the lines in batches, at most `interval`
    seconds late (or as soon as `max_bytes` are waiting), from a flusher thread of the process that
    logged them: after a fork the child starts its own, and lines the parent held stay the parent's."""

    def __init__(self, stream: TextIO, interval: float = 0.2, max_bytes: int = 64 * 1024) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.max_bytes = max_bytes
        self._lines: list[str] = []
        self._size = 0
        self._flusher = False  # started by the first line of each process
        self._wake = threading.Event()
        self._write_lock = threading.Lock()  # keeps batches in order between the flusher and flush()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The parent's flusher thread did not come along, and the lines it holds are its own to write.
        self._flusher = False
        self._lines, self._size = [], 0
        self._wake = threading.Event()
        self._write_lock = threading.Lock()  # a flusher of the parent may have held it at the fork

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._queue(line)  # Handler.handle holds self.lock here

    def queue_line(self, line: str) -> None:
        """Queue a line formatted by the caller (with its newline), as emit() queues a record's."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._queue(line)

    def _queue(self, line: str) -> None:
        if not self._flusher:
            self._flusher = True
            threading.Thread(target=self._flush_every_interval, name="access-log", daemon=True).start()
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.max_bytes:
            self._wake.set()

    def writes_default_lines(self) -> bool:
        """Formats records with FORMAT and the cached-second asctime, filters nothing, takes INFO."""
        formatter = self.formatter
        return (
            type(formatter) is SecondCachedFormatter
            and formatter._fmt == FORMAT
            and not self.filters
            and self.level <= logging.INFO
        )

    def _flush_every_interval(self) -> None:
        while True:  # a daemon thread of this process only: a fork does not copy it
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._write_lock:
            with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                lines, self._lines, self._size = self._lines, [], 0
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):  # stderr closed at exit: nothing left to write to
                    pass


ACCESS_LOGGER = "mlrollout.access"
ACCESS_MESSAGE = "%s %s %d %.2fms rid=%s"


class AccessLog:
    """One line per request into the `mlrollout.access` logger.

    While that logger is as `configure` leaves it (its one handler a BufferedLineHandler writing
    FORMAT, no filters, INFO enabled, no propagation), the line is built here and queued straight
    into the handler: the same text logging would write, without a LogRecord and logging's call
    chain, which cost about 20 us of a 1-row request's ~95 us in process (benchmarks/serving/
    RESULTS.md). Any other set-up (another handler or a filter, a level above INFO, logging.disable,
    propagation) goes through logging."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def write(self, method: str, path: str, status: int, elapsed_ms: float, request_id: str) -> None:
        logger = self.logger
        handlers = logger.handlers
        if (
            len(handlers) == 1
            and not logger.propagate
            and not logger.filters
            and logger.isEnabledFor(logging.INFO)
        ):
            handler = handlers[0]
            if type(handler) is BufferedLineHandler and handler.writes_default_lines():
                created = time.time()
                msecs = int((created - int(created)) * 1000)  # as LogRecord computes it
                asctime = cast(SecondCachedFormatter, handler.formatter).asctime(created, msecs)
                message = f"{method} {path} {status} {elapsed_ms:.2f}ms rid={request_id}"
                handler.queue_line(f"{asctime} INFO {logger.name} {message}\n")
                return
        logger.info(ACCESS_MESSAGE, method, path, status, elapsed_ms, request_id)


def with_process_id(record: logging.LogRecord) -> bool:
    """Fill in the pid that `configure` stops every record from looking up, for gunicorn's own lines:
    its error log's format prints `[%(process)d]`, which fails on None (each line a traceback)."""
    if record.process is None:
        record.process = os.getpid()
    return True


def configure(level: str, access_flush_seconds: float = 0.2, stream: TextIO | None = None) -> None:
    """Root logging to stderr in FORMAT at `level` (a name such as INFO), without per-record lookups
    FORMAT does not show; the access log batched every `access_flush_seconds` (0: line by line)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # gunicorn logs through this logger (its handlers are replaced on reopen, the logger is not).
    gunicorn_error = logging.getLogger("gunicorn.error")
    if with_process_id not in gunicorn_error.filters:
        gunicorn_error.addFilter(with_process_id)
    logging._srcfile = None  # the HOWTO's switch for the caller lookup (findCaller's stack walk)
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SecondCachedFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if access_flush_seconds > 0:
        access = logging.getLogger(ACCESS_LOGGER)
        buffered = BufferedLineHandler(stream, interval=access_flush_seconds)
        buffered.setFormatter(SecondCachedFormatter())
        access.addHandler(buffered)
        access.propagate = False


def flush_interval(raw: str | None, default: float = 0.2) -> float:
    """MLROLLOUT_ACCESS_LOG_FLUSH_SECONDS: seconds between access-log writes, 0 for every line."""
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise ValueError(
            f"MLROLLOUT_ACCESS_LOG_FLUSH_SECONDS={raw!r} is not a number of seconds from 0 to 60"
        )
    return value


def flush_access_log() -> None:
    """Write the access lines still buffered (gunicorn's worker_exit; logging.shutdown does it too)."""
    for handler in logging.getLogger(ACCESS_LOGGER).handlers:
        handler.flush()

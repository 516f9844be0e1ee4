"""Logging for `mlrollout-serve` and its shadow relay: one line format, made cheap enough to write a line
per request (the access log is on by default, and it was a tenth of a worker's busy time under load).

Python's logging HOWTO ("Optimization") names what a record gathers that a format may never show: the
caller's file and line (a stack walk per record), thread, process and multiprocessing names. Our
format shows none of them, so they are turned off; and the timestamp is rendered once per second, not
once per line (time.localtime + strftime were a third of a line's cost)."""

from __future__ import annotations

import logging
import sys
import time

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
        second = int(record.created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = (second, time.strftime(self.default_time_format, self.converter(record.created)))
            self._stamp = stamp
        return f"{stamp[1]},{int(record.msecs):03d}"


def configure(level: str) -> None:
    """Root logging to stderr in FORMAT at `level` (a name such as INFO), without per-record lookups
    FORMAT does not show."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the HOWTO's switch for the caller lookup (findCaller's stack walk)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SecondCachedFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])

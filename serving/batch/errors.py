"""What `mlrollout-batch` refuses, each with the exit code a caller (or a Job's pod failure policy)
can act on: bad input and bad usage are deterministic, so retrying them is pointless."""

from __future__ import annotations

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # usage, or a row/column the model's signature refuses: never retried
EXIT_MODEL = 3  # the model cannot be loaded: never retried
EXIT_IO = 4  # the input cannot be read or the output written: may be transient, retried


class BatchError(Exception):
    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BatchInputError(BatchError):
    """A row or column of the input the model's signature refuses; names the file, line and column."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, source: str, message: str, *, line: int | None = None, column: str | None = None):
        where = f"{source}" + (f" line {line}" if line is not None else "")
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.column = column


class BatchIOError(BatchError):
    exit_code = EXIT_IO

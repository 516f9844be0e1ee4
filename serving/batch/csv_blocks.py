"""A CSV file as blocks of whole lines, by byte offset, so that memory stays bounded and a shard or a
resumed run starts exactly where it should.

Shard i of N owns the lines whose first byte lies in its share of the data bytes (after the header);
both ends of a share are moved to the next line start the same way, so the N shards partition the lines
exactly, each shard reads only its own bytes, and a rerun reads the same lines. This needs one record
per line: a quoted field with a line break inside cannot be split by byte offset (such a file is read
whole, `shards=1`, and its line numbers in messages count physical lines)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlrollout.serving.batch.errors import BatchInputError, BatchIOError

DEFAULT_BLOCK_BYTES = 8 * 1024 * 1024
_COUNT_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class Block:
    data: bytes  # whole lines, each ending in a newline (the file's last line may not)
    start: int  # byte offset of data in the file
    end: int  # byte offset just after data


def read_header(path: Path) -> tuple[list[str], int]:
    """The header's column names and the byte offset where data lines start."""
    try:
        with path.open("rb") as f:
            line = f.readline()
    except OSError as exc:
        raise BatchIOError(f"cannot read {path}: {exc}") from exc
    source = str(path)
    if not line.strip():
        raise BatchInputError(source, "the file is empty; expected a header row of column names", line=1)
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchInputError(source, f"the header is not UTF-8 ({exc.reason})", line=1) from None
    names = next(csv.reader(io.StringIO(text)))
    return [n.strip() for n in names], len(line)


def next_line_start(f: BinaryIO, offset: int, data_start: int, size: int) -> int:
    """The first line start at or after `offset` (a line starts after a newline, or at data_start)."""
    if offset <= data_start:
        return data_start
    if offset >= size:
        return size
    f.seek(offset - 1)
    f.readline()  # the rest of the line holding byte offset-1: when that byte is a newline, nothing more
    return f.tell()


def shard_range(path: Path, data_start: int, shard: int, shards: int) -> tuple[int, int]:
    """[begin, end): the bytes of the lines shard `shard` of `shards` owns."""
    size = path.stat().st_size
    span = size - data_start
    raw_begin = data_start + span * shard // shards
    raw_end = data_start + span * (shard + 1) // shards
    with path.open("rb") as f:
        return next_line_start(f, raw_begin, data_start, size), next_line_start(f, raw_end, data_start, size)


def blocks(path: Path, begin: int, end: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[Block]:
    """Whole-line blocks of about `block_bytes` covering [begin, end) (a longer line makes a longer block)."""
    with path.open("rb") as f:
        f.seek(begin)
        position = begin
        carry = b""
        while position < end:
            piece = f.read(min(block_bytes, end - position))
            if not piece:
                break
            position += len(piece)
            data = carry + piece
            if position >= end:
                carry = b""
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: keep reading until it ends
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            yield Block(data=data, start=position - len(carry) - len(data), end=position - len(carry))
        if carry:
            yield Block(data=carry, start=position - len(carry), end=position)


def line_number(path: Path, offset: int) -> int:
    """The 1-based number of the line that starts at `offset` (counted only when a message needs it)."""
    count = 0
    with path.open("rb") as f:
        remaining = offset
        while remaining > 0:
            piece = f.read(min(_COUNT_CHUNK, remaining))
            if not piece:
                break
            count += piece.count(b"\n")
            remaining -= len(piece)
    return count + 1


def row_line_offset(block: bytes, row: int) -> int:
    """Lines from the block's start to parsed row `row` (blank lines are skipped by the parser)."""
    seen = -1
    for index, line in enumerate(block.split(b"\n")):
        if line.strip(b"\r"):
            seen += 1
            if seen == row:
                return index
    return max(0, block.count(b"\n") - 1)

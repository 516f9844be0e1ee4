"""Byte-range shards of a CSV partition its lines exactly, and blocks hold whole lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlrollout.serving.batch import csv_blocks

lines_strategy = st.lists(
    st.text(alphabet="abc,0123456789", min_size=0, max_size=30), min_size=0, max_size=60
)


def write(path: Path, header: str, lines: list[str], trailing_newline: bool) -> bytes:
    body = "\n".join([header, *lines]) + ("\n" if trailing_newline else "")
    path.write_bytes(body.encode())
    return body.encode()


def shard_lines(path: Path, shards: int, block_bytes: int) -> list[list[bytes]]:
    _, data_start = csv_blocks.read_header(path)
    out = []
    for shard in range(shards):
        begin, end = csv_blocks.shard_range(path, data_start, shard, shards)
        data = b"".join(b.data for b in csv_blocks.blocks(path, begin, end, block_bytes))
        out.append(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n") if data else [])
    return out


@settings(max_examples=150, deadline=None)
@given(
    lines=lines_strategy,
    shards=st.integers(1, 9),
    block_bytes=st.integers(1, 64),
    trailing=st.booleans(),
)
def test_shards_partition_the_lines(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], shards: int, block_bytes: int, trailing: bool
) -> None:
    path = tmp_path_factory.mktemp("blocks") / "f.csv"
    write(path, "h1,h2", lines, trailing)
    got = [line.decode() for part in shard_lines(path, shards, block_bytes) for line in part]
    expected = lines if (trailing or lines) else []
    if not trailing and lines and lines[-1] == "":
        expected = lines[:-1]  # a final empty line without a newline is no line at all
    assert got == expected


def test_blocks_end_on_line_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    write(path, "a", [str(i) * (i % 7 + 1) for i in range(500)], True)
    _, start = csv_blocks.read_header(path)
    blocks = list(csv_blocks.blocks(path, start, path.stat().st_size, 100))
    assert len(blocks) > 10
    assert all(b.data.endswith(b"\n") for b in blocks)
    assert [b.start for b in blocks[1:]] == [b.end for b in blocks[:-1]]


def test_line_number_counts_from_one(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    data = write(path, "a", ["1", "2", "3"], True)
    assert csv_blocks.line_number(path, 0) == 1
    assert csv_blocks.line_number(path, data.index(b"3\n")) == 4


def test_row_line_offset_skips_blank_lines() -> None:
    assert csv_blocks.row_line_offset(b"1\n\n2\n3\n", 1) == 2
    assert csv_blocks.row_line_offset(b"1\n2\n", 0) == 0

"""`mlrollout-batch` scores a file larger than the memory it is given: a memory cgroup (v1 or v2) with a
limit below the input's size, the kernel's own enforcement (an over-limit process is killed)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_files import write_numeric_csv
from support.ci import unavailable

CLI = str(Path(sys.executable).parent / "mlrollout-batch")
LIMIT_BYTES = 320 * 1024 * 1024
CGROUP_ROOTS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup"))


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    for root in CGROUP_ROOTS:
        v1 = (root / "memory.limit_in_bytes").exists()
        if not v1 and not (root / "cgroup.controllers").exists():
            continue
        group = root / f"mlrollout-batch-test-{uuid.uuid4().hex[:8]}"
        try:
            group.mkdir()
            if v1:
                (group / "memory.limit_in_bytes").write_text(str(LIMIT_BYTES))
                swap = group / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(LIMIT_BYTES))
            else:
                (group / "memory.max").write_text(str(LIMIT_BYTES))
                (group / "memory.swap.max").write_text("0")
        except OSError as exc:
            if group.exists():
                group.rmdir()
            unavailable(f"cannot create a memory cgroup under {root}: {exc}")
        try:
            yield group
        finally:
            group.rmdir()
        return
    unavailable("no memory cgroup controller mounted under /sys/fs/cgroup")


def test_a_file_larger_than_the_memory_limit_completes(
    memory_cgroup: Path, numeric_model: Path, tmp_path: Path
) -> None:
    chunk = tmp_path / "chunk.csv"
    write_numeric_csv(chunk, rows=100_000, seed=3)
    header, _, body = chunk.read_bytes().partition(b"\n")
    big = tmp_path / "big.csv"
    copies = LIMIT_BYTES // len(body) + 2
    with big.open("wb") as f:
        f.write(header + b"\n")
        for _ in range(copies):
            f.write(body)
    assert big.stat().st_size > LIMIT_BYTES
    out = tmp_path / "scores.csv"
    procs = memory_cgroup / "cgroup.procs"
    result = subprocess.run(
        [
            CLI,
            "--model-uri",
            str(numeric_model),
            "--input",
            str(big),
            "--output",
            str(out),
            "--progress",
            "log",
        ],
        preexec_fn=lambda: procs.write_text(str(os.getpid())),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    with out.open("rb") as f:
        lines = sum(piece.count(b"\n") for piece in iter(lambda: f.read(1 << 24), b""))
    assert lines == 1 + copies * 100_000
    peak = memory_cgroup / "memory.max_usage_in_bytes"
    if peak.exists():
        assert int(peak.read_text()) <= LIMIT_BYTES

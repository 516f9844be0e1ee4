"""Docker helpers shared by the image tests (plain functions, no fixtures)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_TAG = "test"


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    dockerfile: str
    build_seconds: float
    size_bytes: int

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


def run(argv: list[str], *, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    return proc


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], timeout=timeout, check=check)


def build(name: str, dockerfile: str, base: str, log: Path) -> BuiltImage:
    tag = f"{name}:{IMAGE_TAG}"
    argv = [
        "docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
        "-f", str(ROOT / dockerfile), "-t", tag, str(ROOT),
    ]  # fmt: skip
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        pytest.fail(
            f"docker build of {dockerfile} failed; see {log}:\n{log.read_text()[-4000:]}", pytrace=False
        )
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    return BuiltImage(
        name=name, tag=tag, dockerfile=dockerfile, build_seconds=round(seconds, 1), size_bytes=size
    )

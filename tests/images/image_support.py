"""Docker helpers shared by the image tests (plain functions, no fixtures)."""

from __future__ import annotations

import json
import stat
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.mlflow_models import ModelVersionInfo

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


@dataclass(frozen=True)
class ServingContainer:
    container_id: str
    url: str
    port: int
    model: ModelVersionInfo


def http(method: str, url: str, body: object = None, timeout: float = 10) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def readable_by_all(root: Path) -> None:
    """The container's user is not the host user that trained the model: it only needs to read."""
    for path in [root, *root.rglob("*")]:
        extra = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        path.chmod(path.stat().st_mode | extra)


def wait_ready(container_id: str, url: str, timeout: float) -> None:
    """Poll /readyz until 200; fail at once with the container's logs if it exits."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        state = docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", container_id).stdout
        if not state.startswith("true"):
            logs = docker("logs", container_id, check=False)
            pytest.fail(
                f"serving container exited ({state.strip()}):\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
            )
        try:
            status, body = http("GET", f"{url}/readyz", timeout=2)
            if status == 200:
                return
            last = f"{status} {body[:200]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    logs = docker("logs", container_id, check=False)
    pytest.fail(f"serving container not ready after {timeout}s ({last}):\n{logs.stderr[-3000:]}")

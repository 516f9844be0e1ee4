"""Docker engine, the debootstrap base image and both project images, built once per session.

The engine and the base image come from hack/ (the same scripts a developer runs); build times and
sizes of both images go to .local/images/report.json (and stderr) for the README's table."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict

import pytest
from images.image_support import ROOT, BuiltImage, build, run
from support.ci import unavailable
from support.procs import LogSink

HACK = ROOT / "hack"
REPORT = ROOT / ".local" / "images" / "report.json"


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers (started by hack/docker-engine.sh when it is not running)."""
    if shutil.which("docker") is None and shutil.which("apt-get") is None:
        unavailable("no docker client and no apt-get to install docker.io")
    proc = run(["bash", str(HACK / "docker-engine.sh")], timeout=900, check=False)
    if proc.returncode != 0:
        unavailable(f"Docker engine did not start: {proc.stderr[-2000:]}")


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    """The debootstrap stand-in for python:3.11-slim (cached by version, see hack/base-image.sh)."""
    proc = run(["bash", str(HACK / "base-image.sh")], timeout=1800, check=False)
    if proc.returncode != 0:
        unavailable(f"base image could not be made (Debian archive reachable?): {proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


class _Images:
    """Both images, built lazily so a test that needs one does not wait for the other."""

    def __init__(self, base: str, logs: LogSink) -> None:
        self.base = base
        self.logs = logs
        self.built: dict[str, BuiltImage] = {}

    def get(self, name: str, dockerfile: str) -> BuiltImage:
        if name not in self.built:
            log = self.logs.path(f"docker-build-{name}")
            self.built[name] = build(name, dockerfile, self.base, log)
        return self.built[name]


@pytest.fixture(scope="session")
def images(base_image: str, component_logs: LogSink) -> Iterator[_Images]:
    imgs = _Images(base_image, component_logs)
    yield imgs
    if imgs.built:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        report = {"base_image": base_image, "images": [asdict(b) for b in imgs.built.values()]}
        REPORT.write_text(json.dumps(report, indent=2) + "\n")
        for b in imgs.built.values():
            print(f"\n[images] {b.tag}: {b.size_mb:.0f} MB, built in {b.build_seconds:.1f}s", file=sys.stderr)


@pytest.fixture(scope="session")
def serving_image(images: _Images) -> BuiltImage:
    return images.get("mlrollout-serving", "Dockerfile.serving")


@pytest.fixture(scope="session")
def operator_image(images: _Images) -> BuiltImage:
    return images.get("mlrollout-operator", "Dockerfile.operator")

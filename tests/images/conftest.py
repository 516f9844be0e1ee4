"""Docker engine, the debootstrap base image and both project images, built once per session.

The engine and the base image come from hack/ (the same scripts a developer runs); build times and
sizes of both images go to .local/images/report.json (and stderr) for the README's table."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from images.image_support import (
    ROOT,
    BuiltImage,
    ServingContainer,
    build,
    docker,
    readable_by_all,
    run,
    wait_ready,
)
from support.ci import unavailable
from support.mlflow_models import ModelVersionInfo, train_and_register
from support.procs import LogSink, free_port

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


# --------------------------------------------------------------------------- serving on a real model
@pytest.fixture(scope="session")
def model_dir(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelVersionInfo, Path]:
    """A real MLflow model (trained and registered), downloaded to a plain directory to mount."""
    import mlflow.artifacts

    info = train_and_register(mlflow_server.tracking_uri, "image-test-iris", dataset="iris")
    dest = tmp_path_factory.mktemp("image-model")
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=str(dest)))
    dest.chmod(0o755)
    readable_by_all(local)
    return info, local


@pytest.fixture(scope="session")
def serving_container(
    serving_image: BuiltImage, model_dir: tuple[ModelVersionInfo, Path], component_logs: LogSink
) -> Iterator[ServingContainer]:
    info, local = model_dir
    port = free_port()
    container_id = docker(
        "run", "--detach", "--name", f"mlrollout-serving-test-{uuid.uuid4().hex[:8]}",
        # As a hardened pod runs it: read-only root, /tmp the only writable place, no capabilities.
        "--read-only", "--tmpfs", "/tmp:rw,size=64m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--publish", f"127.0.0.1:{port}:8080",
        "--volume", f"{local}:/model:ro",
        "--env", "MLROLLOUT_MODEL_URI=/model",
        "--env", f"MLROLLOUT_MODEL_NAME={info.name}",
        "--env", f"MLROLLOUT_MODEL_VERSION={info.version}",
        "--env", "MLROLLOUT_WORKERS=2",
        serving_image.tag,
    ).stdout.strip()  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(container_id, url, timeout=120)
        yield ServingContainer(container_id=container_id, url=url, port=port, model=info)
    finally:
        logs = docker("logs", container_id, check=False)
        component_logs.path("serving-container").write_text(logs.stdout + logs.stderr)
        docker("rm", "--force", container_id, check=False)

"""Both images built for real with the Docker engine: non-root, no cross-dependencies, no compilers,
and the serving image answering on a real MLflow model with a read-only root filesystem."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from images.image_support import ROOT, BuiltImage, ServingContainer, docker, http

pytestmark = pytest.mark.image

UID = "10001"
# Generous ceilings that catch a regression (a compiler toolchain or the other extra creeping in).
SIZE_BUDGET_MB = {"mlrollout-serving": 800, "mlrollout-operator": 450}


def python_in(image: BuiltImage, code: str) -> str:
    return docker("run", "--rm", "--read-only", "--entrypoint", "python3", image.tag, "-c", code).stdout


def importable(image: BuiltImage, modules: list[str]) -> list[str]:
    code = f"import importlib.util as u; print(','.join(m for m in {modules!r} if u.find_spec(m)))"
    return [m for m in python_in(image, code).strip().split(",") if m]


# --------------------------------------------------------------------------- both images
@pytest.mark.parametrize("which", ["serving_image", "operator_image"])
def test_image_runs_as_numeric_non_root_user(which: str, request: pytest.FixtureRequest) -> None:
    image: BuiltImage = request.getfixturevalue(which)
    user = docker("image", "inspect", "--format", "{{.Config.User}}", image.tag).stdout.strip()
    assert user == f"{UID}:{UID}", "numeric USER lets Kubernetes' runAsNonRoot verify it"
    uid = docker("run", "--rm", "--read-only", "--entrypoint", "id", image.tag, "-u").stdout.strip()
    assert uid == UID
    assert uid != "0"


@pytest.mark.parametrize("which", ["serving_image", "operator_image"])
def test_final_stage_has_no_compilers_or_pip(which: str, request: pytest.FixtureRequest) -> None:
    image: BuiltImage = request.getfixturevalue(which)
    found = docker(
        "run", "--rm", "--read-only", "--entrypoint", "sh", image.tag, "-c",
        "for t in gcc cc c++ g++ make ld as pip pip3; do command -v $t; done; true",
    ).stdout.split()  # fmt: skip
    assert found == []


@pytest.mark.parametrize("which", ["serving_image", "operator_image"])
def test_image_size_within_budget(which: str, request: pytest.FixtureRequest) -> None:
    image: BuiltImage = request.getfixturevalue(which)
    assert 0 < image.size_mb <= SIZE_BUDGET_MB[image.name], f"{image.tag} is {image.size_mb:.0f} MB"


SOURCE_HASHES = """
import hashlib, importlib, pathlib, sys
pkg = pathlib.Path(importlib.import_module(sys.argv[1]).__file__).parent
for f in sorted(pkg.rglob("*.py")):
    print(f.relative_to(pkg), hashlib.sha256(f.read_bytes()).hexdigest())
"""


@pytest.mark.parametrize(("which", "package", "folder"), [
    ("serving_image", "mlrollout.serving", "serving"),
    ("operator_image", "mlrollout.operator", "operator"),
])  # fmt: skip
def test_image_carries_the_current_sources(
    which: str, package: str, folder: str, request: pytest.FixtureRequest
) -> None:
    image: BuiltImage = request.getfixturevalue(which)
    inside = docker(
        "run", "--rm", "--read-only", "--entrypoint", "python3", image.tag, "-c", SOURCE_HASHES, package
    ).stdout.splitlines()  # fmt: skip
    here = [
        f"{f.relative_to(ROOT / folder)} {hashlib.sha256(f.read_bytes()).hexdigest()}"
        for f in sorted((ROOT / folder).rglob("*.py"))
        if "__pycache__" not in f.parts
    ]
    assert inside == here


def test_base_image_is_cached_by_version_for_a_restarted_engine(base_image: str) -> None:
    version = base_image.split(":", 1)[1]
    tarball = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlrollout"
    tarball = tarball / f"base-image-{version}.tar"
    assert tarball.stat().st_size > 50_000_000, f"{tarball}: docker load needs the saved image"
    again = subprocess.run(
        ["bash", str(ROOT / "hack" / "base-image.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert again.stdout.strip() == base_image
    assert "debootstrap" not in again.stderr  # present: no rebuild
    python = docker(
        "run", "--rm", "--entrypoint", "python3", base_image, "-c", "import sys, venv; print(sys.version)"
    )
    assert python.stdout.startswith("3.11.")


def test_serving_image_carries_no_operator_dependencies(serving_image: BuiltImage) -> None:
    assert importable(serving_image, ["flask", "gunicorn", "sklearn", "mlrollout.serving"]) == [
        "flask", "gunicorn", "sklearn", "mlrollout.serving",
    ]  # fmt: skip
    assert importable(serving_image, ["kopf", "kubernetes", "kubernetes_asyncio", "mlrollout.operator"]) == []


def test_operator_image_carries_no_serving_dependencies(operator_image: BuiltImage) -> None:
    assert importable(operator_image, ["kopf", "kubernetes_asyncio", "mlrollout.operator"]) == [
        "kopf", "kubernetes_asyncio", "mlrollout.operator",
    ]  # fmt: skip
    assert importable(operator_image, ["sklearn", "flask", "scipy", "pandas", "mlrollout.serving"]) == []


def test_operator_image_starts_its_cli_on_a_read_only_root(operator_image: BuiltImage) -> None:
    out = docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", operator_image.tag, "--help").stdout
    assert "--peering" in out
    assert "--liveness" in out


# --------------------------------------------------------------------------- serving on a real model
def test_serving_image_answers_a_prediction(serving_container: ServingContainer) -> None:
    rows = serving_container.model.sample_rows
    status, body = http("POST", f"{serving_container.url}/invocations", {"dataframe_records": rows})
    assert status == 200, body[:500]
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == len(rows)
    assert {int(p) for p in predictions} <= set(serving_container.model.classes)


def test_serving_image_probes_and_metrics_on_one_port(serving_container: ServingContainer) -> None:
    assert http("GET", f"{serving_container.url}/healthz")[0] == 200
    assert http("GET", f"{serving_container.url}/readyz")[0] == 200
    status, body = http("GET", f"{serving_container.url}/metrics")
    assert status == 200
    assert b"mlrollout_requests_total" in body


def test_serving_container_root_filesystem_is_read_only(serving_container: ServingContainer) -> None:
    probe = docker(
        "exec", serving_container.container_id, "sh", "-c",
        "touch /opt/venv/probe 2>&1; echo rc=$?; touch /tmp/probe && echo tmp-ok; id -u",
    ).stdout  # fmt: skip
    assert "Read-only file system" in probe
    assert "tmp-ok" in probe
    assert probe.split()[-1] == "10001"


def test_serving_image_refuses_to_start_without_a_model(serving_image: BuiltImage) -> None:
    proc = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", serving_image.tag],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "MLROLLOUT_MODEL_URI" in proc.stderr

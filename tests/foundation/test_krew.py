"""The krew package of the plugin (hack/krew/build.sh): a reproducible archive whose sha256 the
rendered manifest carries, holding one executable that runs on a bare python3 (no venv, outside the
checkout, PyYAML from inside the archive)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def build(out: Path) -> tuple[Path, Path]:
    env = {**os.environ, "KREW_OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "krew" / "build.sh"), "https://example.invalid/v0"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    archive = next(out.glob("kubectl-mlrollout-*.tar.gz"))
    return archive, out / "mlrollout.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build(tmp_path_factory.mktemp("krew"))


def test_the_manifest_names_the_archive_and_its_sha256(built: tuple[Path, Path]) -> None:
    archive, manifest = built
    doc = yaml.safe_load(manifest.read_text())
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "krew.googlecontainertools.github.com/v1alpha2",
        "Plugin",
        "mlrollout",
    )
    version = doc["spec"]["version"]
    assert archive.name == f"kubectl-mlrollout-{version.removeprefix('v')}.tar.gz"
    (platform,) = doc["spec"]["platforms"]
    assert platform["uri"] == f"https://example.invalid/v0/{archive.name}"
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert platform["bin"] == "kubectl-mlrollout"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted(f["from"] for f in platform["files"])
    assert not [p for p in ("@VERSION@", "@URI@", "@SHA256@") if p in manifest.read_text()]  # all filled


def test_the_archive_is_reproducible(built: tuple[Path, Path], tmp_path: Path) -> None:
    again, _ = build(tmp_path)
    assert again.read_bytes() == built[0].read_bytes()


def test_the_executable_runs_on_a_bare_python(built: tuple[Path, Path], tmp_path: Path) -> None:
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python, "no system python3"
    with tarfile.open(built[0]) as tar:
        tar.extractall(tmp_path, filter="data")
    exe = tmp_path / "kubectl-mlrollout"
    assert os.access(exe, os.X_OK)
    bin_dir = tmp_path / "bin"  # only python3 on PATH: no venv, no kubectl, no PYTHONPATH
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(python)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    run = lambda *args: subprocess.run(  # noqa: E731
        [python, str(exe), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert run("__complete", "st").stdout == "status\n:4\n"
    assert "exit codes of `status --watch`" in run("--help").stdout
    # -o yaml works from the PyYAML inside the archive (kubectl is absent: a clear error, exit 1).
    code = "import sys; sys.path.insert(0, sys.argv[1]); import yaml; print(yaml.__file__)"
    probe = subprocess.run(
        [python, "-c", code, str(exe)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
        check=False,
    )  # fmt: skip
    assert probe.stdout.startswith(str(exe)), probe
    missing = run("status", "x", "-o", "yaml")
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: kubectl not found on PATH")
    assert json.loads(json.dumps(yaml.safe_load(Path(built[1]).read_text())))  # the manifest is plain data

"""The wheel carries every subpackage: the folder -> import path mapping is explicit in pyproject."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = set()
    for prefix, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([prefix, *relative.parts]))
    assert on_disk == listed, f"missing from pyproject: {on_disk - listed}; stale: {listed - on_disk}"


def test_no_top_level_operator_package() -> None:
    """A top-level `operator` package would shadow (and be shadowed by) the standard library."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(name.startswith("mlrollout.") for name in config["packages"])
    import operator

    assert operator.__file__ is not None
    assert "site-packages" not in operator.__file__
    assert hasattr(operator, "itemgetter")


def test_fresh_venv_runs_modules_from_the_repo_root(tmp_path: Path) -> None:
    """`python -m` prepends the working directory; in a fresh venv nothing has imported the
    stdlib `operator` yet, so without -P the repo's operator/ folder would shadow it (it broke
    `make setup` on a clean machine once). The Makefile runs every `python -m` with -P."""
    import subprocess
    import sys
    import venv

    venv.create(tmp_path / "venv", with_pip=False)
    python = str(tmp_path / "venv" / "bin" / "python")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, *args], cwd=ROOT, capture_output=True, text=True, check=False)

    unsafe = run("-m", "json.tool", "--help")
    safe = run("-P", "-m", "json.tool", "--help")
    assert safe.returncode == 0, safe.stderr
    if unsafe.returncode != 0:  # the hazard is real on this interpreter: the guard below matters
        assert "operator" in unsafe.stderr
    makefile = (ROOT / "Makefile").read_text()
    assert "$(PYTHON) -P -m venv" in makefile
    assert makefile.count("$(PY) -P -m pip") == 2
    assert sys.version_info >= (3, 11)  # -P exists from Python 3.11 on

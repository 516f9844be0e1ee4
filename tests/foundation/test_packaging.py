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

"""The pure layers (planner, model, spec, routers, children, analysis decisions) import no I/O.

Two checks: import-linter's static contract from pyproject.toml ([tool.importlinter]), which follows
indirect imports too, and a runtime one: importing the planner in a fresh interpreter loads none of
the I/O libraries (the static graph does not see package __init__ side effects)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
IO = ("kopf", "kubernetes_asyncio", "aiohttp", "requests", "mlflow", "prometheus_client", "socket", "http")


def test_import_linter_contract_is_kept() -> None:
    assert LINT_IMPORTS.exists(), "import-linter is missing: it is in the dev extra (make venv)"
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_the_contract_covers_the_planner_and_the_analysis_decisions() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    sources = set(contract["source_modules"])
    assert {"mlrollout.operator.planner", "mlrollout.operator.analysis.judge"} <= sources
    assert set(IO) <= set(contract["forbidden_modules"])


def test_importing_the_planner_loads_no_io_library() -> None:
    code = (
        "import json, sys\n"
        "import mlrollout.operator.planner, mlrollout.operator.model, mlrollout.operator.spec\n"
        "import mlrollout.operator.routers.replicas, mlrollout.operator.children\n"
        f"print(json.dumps(sorted(m for m in {list(IO)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

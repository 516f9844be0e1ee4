"""`mlrollout-serve` refuses to start, with a message naming the problem, when it cannot serve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "mlrollout-serve")


def run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLROLLOUT_")}
    return subprocess.run(
        [CLI],
        env={
            **clean,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
            "MLROLLOUT_BIND": "127.0.0.1:0",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_model_uri(tmp_path: Path) -> None:
    result = run({}, tmp_path)
    assert result.returncode == 2
    assert "set MLROLLOUT_MODEL_URI" in result.stderr


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    result = run({"MLROLLOUT_MODEL_URI": str(tmp_path), "MLROLLOUT_WORKERS": "many"}, tmp_path)
    assert result.returncode == 2
    assert "MLROLLOUT_WORKERS='many' is not an integer" in result.stderr


def test_unloadable_model_stops_start_up(tmp_path: Path) -> None:
    result = run({"MLROLLOUT_MODEL_URI": str(tmp_path / "nowhere")}, tmp_path)
    assert result.returncode != 0
    assert "no MLmodel file under" in result.stderr
    assert "Traceback" not in result.stderr

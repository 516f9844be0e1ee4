"""Prometheus 3 (prometheus, promtool) built from its pinned Go module by hack/build-prometheus.sh.

The only Prometheus the tests and tools use: there is no fallback to a system package (Debian's 2.x has
no kubernetes_sd_configs). A failed build raises PrometheusBuildError carrying the build's own output.

    bin_dir = build_prometheus()      # builds on first use (minutes), then cached by version
    prometheus_binary(), promtool_binary()
"""

from __future__ import annotations

import subprocess
from pathlib import Path

HACK = Path(__file__).resolve().parent
SCRIPT = HACK / "build-prometheus.sh"
BUILD_TIMEOUT_SECONDS = 3600  # a cold build on 2 busy cores takes about 10 minutes


class PrometheusBuildError(RuntimeError):
    """hack/build-prometheus.sh failed; the message ends with the tail of its output."""


_built: Path | PrometheusBuildError | None = None  # one build attempt per process, failures included


def build_prometheus() -> Path:
    """The directory holding prometheus and promtool, building them if the cache has none."""
    global _built  # noqa: PLW0603 - the per-process memo of one slow build
    if _built is None:
        _built = _run_build()
    if isinstance(_built, PrometheusBuildError):
        raise _built
    return _built


def _run_build() -> Path | PrometheusBuildError:
    try:
        proc = subprocess.run(
            ["bash", str(SCRIPT)], capture_output=True, text=True, check=False, timeout=BUILD_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return PrometheusBuildError(f"{SCRIPT} did not finish within {BUILD_TIMEOUT_SECONDS}s")
    except OSError as exc:
        return PrometheusBuildError(f"cannot run {SCRIPT}: {exc}")
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr + proc.stdout).splitlines()[-60:])
        return PrometheusBuildError(
            f"building Prometheus with {SCRIPT} failed (exit {proc.returncode}):\n{tail}"
        )
    lines = proc.stdout.strip().splitlines()
    bin_dir = Path(lines[-1]) if lines else None
    if bin_dir is None or not (bin_dir / "prometheus").is_file() or not (bin_dir / "promtool").is_file():
        return PrometheusBuildError(f"{SCRIPT} succeeded but printed no bin dir with prometheus and promtool")
    return bin_dir


def prometheus_binary() -> Path:
    return build_prometheus() / "prometheus"


def promtool_binary() -> Path:
    return build_prometheus() / "promtool"

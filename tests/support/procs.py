"""Start real processes for tests: own process group, logs to a file, clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# free_port and log_tail live with the control plane launcher (standard library only, usable before
# any virtualenv exists); every importer of this module already has hack/ on its path, make sure.
_HACK = str(Path(__file__).resolve().parents[2] / "hack")
if _HACK not in sys.path:
    sys.path.insert(0, _HACK)

from local_cluster import free_port, log_tail  # noqa: E402

__all__ = ["LogSink", "ManagedProcess", "ProcessFailed", "free_port", "tail"]


class LogSink(Protocol):
    def path(self, name: str) -> Path: ...


def tail(path: Path, lines: int = 40) -> str:
    return log_tail(path, lines)


class ProcessFailed(RuntimeError):
    pass


@dataclass
class ManagedProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        logs: LogSink,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> ManagedProcess:
        log_path = logs.path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        return cls(name=name, proc=proc, log_path=log_path)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_http(self, url: str, timeout: float = 60.0, *, status: int = 200) -> None:
        """Wait until `url` answers `status`; raise with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive:
                raise ProcessFailed(
                    f"{self.name} exited with {self.proc.returncode} before {url} answered; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == status:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                if exc.code == status:
                    return
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ProcessFailed(
            f"{self.name}: {url} not answering {status} within {timeout:.0f}s ({last}); "
            f"log {self.log_path}:\n{tail(self.log_path)}"
        )

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the whole process group, SIGKILL after `timeout`; return the exit code."""
        if self.alive:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Children that outlived the leader (gunicorn workers, say) go too.
        self.signal(signal.SIGKILL)
        return self.proc.returncode

    def kill(self) -> None:
        """Hard kill, as a crash would."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

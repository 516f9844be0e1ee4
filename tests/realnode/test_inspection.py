"""kubectl-native inspection against the installed operator (2 real pods) and real serving pods:
one ModelDeployment taken through a promotion, a rollout held at a `pause {}` step, and an abort.

- `kubectl mlrollout status NAME --watch` exits 0 on the promotion, 4 when `--timeout` passes, 3 on
  the rollback; piped, it prints one plain line per changed fact (checked line by line).
- `kubectl wait --for=condition=Promoted`, started right after the `kubectl apply` of a new version,
  returns only once that version is stable (status.observedGeneration keeps it from seeing the
  previous rollout's Promoted=True); `--for=condition=Settled` returns on the rollback.
- `kubectl rollout status` accepts the canary Deployment by the documented label selector and by
  the name in status.canary.deployment.
- `kubectl mlrollout get NAME` is a tree of revisions and pods, `-o json` the same data.
With MLROLLOUT_INSPECTION_CAPTURE=FILE set, the terminal view of `status --watch` mid-rollout is
captured from a real tmux pane into FILE (the README's screenshot comes from there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from cluster.helpers import Kubectl
from local_cluster import LocalCluster
from realpods import md_serving, wait_until
from support.mlflow_models import ModelVersionInfo, train_and_register
from test_rollout import Md

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(900)]
MODEL = "node-inspection"
NAME = "inspect"
KINDS = ("phase", "step", "pods", "router", "analysis", "event")
CANARY = f"mlrollout.io/model-deployment={NAME},mlrollout.io/track=canary"


class Background:
    """A command started now and read later (kubectl wait, status --watch), bounded in time; its
    output is collected as it comes, so a test can wait for a line before it acts."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.started = time.monotonic()
        self.streams: dict[str, list[str]] = {"out": [], "err": []}
        self.readers = [
            threading.Thread(target=self._read, args=(pipe, self.streams[key]), daemon=True)
            for key, pipe in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(pipe: IO[str] | None, into: list[str]) -> None:
        assert pipe is not None
        for line in pipe:
            into.append(line)

    def text(self, key: str = "out") -> str:
        return "".join(self.streams[key])

    def wait_for_line(self, prefix: str, timeout: float) -> None:
        """Until the command has printed a line starting with `prefix` (it saw that state)."""
        wait_until(
            f"{' '.join(self.argv)} to print {prefix!r}",
            lambda: any(line.startswith(prefix) for line in self.text().splitlines()),
            timeout,
            0.2,
        )

    def result(self, timeout: float) -> tuple[int, str, str, float]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(
                f"{' '.join(self.argv)} still running after {timeout:.0f}s: "
                f"{self.text()[-2000:]} {self.text('err')[-2000:]}"
            )
        for reader in self.readers:
            reader.join(timeout=30)
        return self.proc.returncode, self.text(), self.text("err"), time.monotonic() - self.started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def versions(node_mlflow: Any) -> list[ModelVersionInfo]:
    return [train_and_register(node_mlflow.tracking_uri, MODEL, seed=s) for s in (0, 1, 2)]


@pytest.fixture
def started() -> Iterator[list[Background]]:
    procs: list[Background] = []
    yield procs
    for p in procs:
        p.stop()


def manifest(version: str, image: str, tracking_uri: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": MODEL, "version": version},
            "gate": {"metric": "f1_score", "threshold": 0.5},
            "serving": md_serving(image, tracking_uri, 1),
            "rollout": {"steps": steps, "progressDeadlineSeconds": 240},
        },
    }


def check_piped_lines(out: str) -> list[str]:
    """Plain lines (no terminal control), each a known kind, a kind repeated only when it changed."""
    assert "\x1b" not in out, out
    lines = out.splitlines()
    last: dict[str, str] = {}
    for line in lines[:-1]:
        kind = line.split(" ", 1)[0]
        assert kind in KINDS, f"unexpected line {line!r} in:\n{out}"
        if kind != "event":
            assert last.get(kind) != line, f"{line!r} repeated without a change:\n{out}"
            last[kind] = line
    return lines


def capture_terminal(kc: Kubectl, target: Path) -> None:
    """`status --watch` in a real tmux pane (110x34), captured as text once it has drawn."""
    session = f"mlrollout-inspect-{os.getpid()}"
    command = f"kubectl mlrollout status {NAME} --watch -n {kc.ns}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "110", "-y", "34", command],
        env=kc.env, check=True, timeout=30,
    )  # fmt: skip
    try:
        time.sleep(6)  # two redraws
        pane = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, timeout=30)
    target.write_text(pane.rstrip() + "\n")
    print(f"\n[inspection] terminal view captured to {target}:\n{pane}")


def test_status_watch_kubectl_wait_and_rollout_status_follow_real_rollouts(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any,
    versions: list[ModelVersionInfo], started: list[Background],
) -> None:  # fmt: skip
    v1, v2, v3 = versions
    kc = Kubectl(node, real_namespace)
    md = Md(node, real_namespace, NAME)
    image, uri = node_image("mlrollout-serving"), node_mlflow.in_cluster_uri
    ns = ["-n", real_namespace]

    def background(*argv: str) -> Background:
        p = Background(["kubectl", *argv, *ns], kc.env)
        started.append(p)
        return p

    # The first version: `kubectl wait` returns when it is stable; --watch then exits 0 at once.
    kc.apply(manifest(v1.version, image, uri, [{"setWeight": 50}, {"pause": {"duration": "10s"}}]))
    first = background("wait", "--for=condition=Promoted", f"md/{NAME}", "--timeout=240s").result(260)
    assert first[0] == 0, first
    assert md.status()["stable"]["version"] == v1.version
    code, out, _, _ = background("mlrollout", "status", NAME, "--watch", "--timeout", "60s").result(90)
    assert code == 0, out
    assert out.splitlines()[-1].startswith(f"modeldeployment/{NAME} promoted: version {v1.version}")

    # A promotion, followed from the moment of the apply; it holds at `pause {}` until promoted.
    kc.apply(manifest(v2.version, image, uri, [{"setWeight": 50}, {"pause": {}}]))
    waiter = background("wait", "--for=condition=Promoted", f"md/{NAME}", "--timeout=300s")
    watcher = background("mlrollout", "status", NAME, "--watch", "--timeout", "300s")
    wait_until(
        "the canary Deployment",
        lambda: kc.run("get", "deployments", "-l", CANARY, "-o", "name").stdout,
        120,
        0.5,
    )
    # `kubectl rollout status` by the documented selector, then by the name status gives.
    rollout = background("rollout", "status", "deployment", "-l", CANARY, "--timeout=180s").result(200)
    assert rollout[0] == 0, rollout
    assert "successfully rolled out" in rollout[1], rollout
    paused = md.wait_step(1, 50, timeout=180, canary=v2.version)
    by_name = kc.run("rollout", "status", f"deployment/{paused['canary']['deployment']}", "--timeout=60s")
    assert "successfully rolled out" in by_name.stdout
    if os.environ.get("MLROLLOUT_INSPECTION_CAPTURE") and shutil.which("tmux"):
        capture_terminal(kc, Path(os.environ["MLROLLOUT_INSPECTION_CAPTURE"]))
    assert waiter.proc.poll() is None, "kubectl wait returned while the canary was paused"
    # The watch polls (every 2 s): promote only once it has shown the pause, which it must print.
    watcher.wait_for_line("step 2/2 pause until promoted", 60)
    watcher.wait_for_line(f"pods stable v{v1.version} 1/1, canary v{v2.version} 1/1", 60)
    kc.plugin("promote", NAME)
    code, out, err, waited = waiter.result(300)
    assert code == 0, err
    after_wait = md.status()
    assert after_wait["stable"]["version"] == v2.version, after_wait  # not v1's earlier Promoted=True
    assert not after_wait.get("canary")
    code, out, err, _ = watcher.result(120)
    print(f"\n[inspection] kubectl wait returned after {waited:.1f}s; status --watch printed:\n{out}")
    assert code == 0, f"{out}\n{err}"
    lines = check_piped_lines(out)
    assert lines[-1] == f"modeldeployment/{NAME} promoted: version {v2.version} is stable"
    assert f"pods stable v{v1.version} 1/1, canary v{v2.version} 1/1" in lines, out
    assert any(
        line.startswith(f"event Normal CanaryStarted: version {v2.version} starts as canary")
        for line in lines
    )
    assert any(line.startswith("step 2/2 pause until promoted, weight 50%") for line in lines), out

    # get: a tree of revisions and their pods; -o json: the same data.
    tree = kc.plugin("get", NAME)
    assert re.search(rf"├── {NAME}-v{v2.version}-\S+\s+Deployment\s+stable\s+{v2.version}\s+1/1", tree), tree
    assert re.search(r"│   └── \S+\s+Pod\s+1/1\s+\d+\s+Running", tree), tree
    data = json.loads(kc.plugin("get", NAME, "-o", "json"))
    assert [(r["track"], r["version"]) for r in data["revisions"]] == [
        ("stable", v2.version),
        ("retired", v1.version),
    ]
    assert data["revisions"][0]["pods"][0]["ready"] == 1

    # Held at `pause {}`: the watch gives up at its --timeout with exit 4.
    kc.apply(manifest(v3.version, image, uri, [{"setWeight": 50}, {"pause": {}}]))
    md.wait_step(1, 50, timeout=240, canary=v3.version)
    code, out, err, _ = background("mlrollout", "status", NAME, "--watch", "--timeout", "8s").result(60)
    assert code == 4, f"{out}\n{err}"
    assert f"error: timed out after 8s waiting for modeldeployment/{NAME} (phase Paused" in err

    # Aborted: the watch exits 3, `kubectl wait --for=condition=Settled` returns, Promoted is False.
    watcher = background("mlrollout", "status", NAME, "--watch", "--timeout", "180s")
    settled = background("wait", "--for=condition=Settled", f"md/{NAME}", "--timeout=180s")
    time.sleep(2)  # both are watching the paused rollout before it ends
    kc.plugin("abort", NAME)
    code, out, err, _ = watcher.result(200)
    assert code == 3, f"{out}\n{err}"
    assert f"error: modeldeployment/{NAME} was not promoted (RolledBack)" in err
    check_piped_lines(out)
    assert settled.result(200)[0] == 0
    conditions = {c["type"]: c for c in md.status()["conditions"]}
    assert (conditions["Promoted"]["status"], conditions["Promoted"]["reason"]) == ("False", "RolledBack")
    assert md.status()["stable"]["version"] == v2.version

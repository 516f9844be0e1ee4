"""Session fixtures for real components: the local control plane, an MLflow server, namespaces,
and component logs that are shown whenever a test fails."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))
sys.path.insert(0, str(ROOT / "tests"))

import launch  # noqa: E402
import real_node  # noqa: E402
from local_cluster import ClusterError, LocalCluster  # noqa: E402
from support.ci import unavailable  # noqa: E402
from support.procs import ManagedProcess, ProcessFailed, free_port, tail  # noqa: E402


# --------------------------------------------------------------------------- component logs
@dataclass
class ComponentLogs:
    """Where every process started by the tests writes; tails are attached to failing tests."""

    root: Path
    registered: dict[str, Path] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        safe = name.replace("/", "_")
        p = self.root / f"{safe}.log"
        self.registered[name] = p
        return p

    def register(self, name: str, path: Path) -> None:
        self.registered[name] = path

    def report(self, lines: int = 30) -> str:
        parts = []
        for name, path in sorted(self.registered.items()):
            if path.exists() and path.stat().st_size:
                parts.append(f"===== {name} ({path}) =====\n{tail(path, lines)}")
        return "\n".join(parts)


# One registry per session, reachable from the report hook (which gets no fixtures).
_SESSION_LOGS: list[ComponentLogs] = []


@pytest.fixture(scope="session")
def component_logs(tmp_path_factory: pytest.TempPathFactory) -> ComponentLogs:
    if not _SESSION_LOGS:
        root = Path(os.environ.get("MLROLLOUT_TEST_LOGS") or tmp_path_factory.mktemp("component-logs"))
        root.mkdir(parents=True, exist_ok=True)
        _SESSION_LOGS.append(ComponentLogs(root=root))
    return _SESSION_LOGS[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and _SESSION_LOGS:
        text = _SESSION_LOGS[0].report()
        if text:
            report.sections.append(("component logs (tails)", text))


# --------------------------------------------------------------------------- control plane
@pytest.fixture(scope="session")
def cluster(component_logs: ComponentLogs, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """The local control plane, or an existing cluster named by MLROLLOUT_TEST_KUBECONFIG."""
    existing = os.environ.get("MLROLLOUT_TEST_KUBECONFIG")
    if existing:
        yield _ExternalCluster(Path(existing))
        return
    state = Path(tempfile.mkdtemp(prefix="mlrollout-cluster-"))
    # The real node joins only when a real-pod test asks for it (tests/realnode's `node` fixture), but
    # the control plane must be started for it: its apiserver then listens on the node's bridge.
    wants_node = any(item.get_closest_marker("realnode") for item in request.session.items)
    local = LocalCluster(state=state, nodes=3, real_node=wants_node and not real_node.missing_prerequisites())
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        component_logs.register(component, local.log_path(component))
    t0 = time.monotonic()
    try:
        local.up(join_node=False)
    except (ClusterError, real_node.NodeError) as exc:
        local.down()
        unavailable(f"local Kubernetes control plane: {exc}")
    print(f"\n[cluster] up in {time.monotonic() - t0:.1f}s at {local.kubeconfig}", file=sys.stderr)
    try:
        yield local
    finally:
        local.down()
        # Keep logs and etcd data of a session with failures for the post-mortem.
        if request.session.testsfailed or os.environ.get("MLROLLOUT_KEEP_STATE"):
            print(f"\n[cluster] state kept for inspection: {state}", file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)


class _ExternalCluster(LocalCluster):
    """A user's own cluster: nothing is started or stopped."""

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__(state=kubeconfig.parent)
        self._kc = kubeconfig

    @property
    def kubeconfig(self) -> Path:
        return self._kc

    def up(self, timeout: float = 120) -> None:
        return None

    def down(self) -> None:
        return None


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


# --------------------------------------------------------------------------- MLflow
@dataclass
class MlflowServer:
    tracking_uri: str
    artifact_root: Path
    log_path: Path
    process: ManagedProcess


@pytest.fixture(scope="session")
def mlflow_server(
    component_logs: ComponentLogs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    if not mlflow_bin.exists():
        unavailable(f"mlflow CLI not installed at {mlflow_bin} (run `make setup`)")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    proc = ManagedProcess.start(
        "mlflow-server",
        launch.mlflow_server_argv(root, port),
        logs=component_logs,
        env={**os.environ, "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(f"{uri}/health", timeout=120)
    except ProcessFailed as exc:
        proc.stop()
        unavailable(f"MLflow tracking server: {exc}")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield MlflowServer(
            tracking_uri=uri, artifact_root=root / "artifacts", log_path=proc.log_path, process=proc
        )
    finally:
        proc.stop()

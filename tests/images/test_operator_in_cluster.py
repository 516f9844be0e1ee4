"""The operator image inside the real control plane's security model: it authenticates the way a
pod does (in-cluster config: ServiceAccount token and CA mounted at the standard path), so every
call it makes is checked against the install's RBAC. The init container's script comes from the
rendered manifests, so what is tested is what ships."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from images.image_support import ROOT, BuiltImage, docker, http
from support.procs import LogSink, free_port

pytestmark = [pytest.mark.image, pytest.mark.cluster]

NAMESPACE = "mlrollout-system"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
FINALIZER = "mlrollout.io/finalizer"


def rendered_install(cluster: Any) -> list[dict[str, Any]]:
    out = cluster.kubectl("kustomize", str(ROOT / "manifests")).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def installed(cluster: Any) -> list[dict[str, Any]]:
    applied = cluster.kubectl("apply", "-k", str(ROOT / "manifests"), check=False, timeout=180)
    assert applied.returncode == 0, applied.stderr
    return rendered_install(cluster)


@pytest.fixture(scope="module")
def in_cluster(cluster: Any, installed: Any, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """`docker run` arguments that make a container look like a pod of the operator's ServiceAccount."""
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    entry = kubeconfig["clusters"][0]["cluster"]
    server = urllib.parse.urlsplit(entry["server"])
    sa = tmp_path_factory.mktemp("serviceaccount")
    sa.chmod(0o755)
    if "certificate-authority-data" in entry:
        (sa / "ca.crt").write_bytes(base64.b64decode(entry["certificate-authority-data"]))
    else:
        (sa / "ca.crt").write_bytes(Path(entry["certificate-authority"]).read_bytes())
    token = cluster.kubectl("-n", NAMESPACE, "create", "token", "mlrollout-operator", "--duration=1h").stdout
    (sa / "token").write_text(token.strip())
    (sa / "namespace").write_text(NAMESPACE)
    for f in sa.iterdir():
        f.chmod(0o644)  # the image's user is not the host user
    return [
        "--network", "host", "--read-only", "--tmpfs", "/tmp:rw,size=64m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--volume", f"{sa}:{SA_MOUNT}:ro",
        "--env", f"KUBERNETES_SERVICE_HOST={server.hostname}",
        "--env", f"KUBERNETES_SERVICE_PORT={server.port}",
    ]  # fmt: skip


def test_init_container_creates_the_peering_object_idempotently(
    operator_image: BuiltImage, installed: list[dict[str, Any]], in_cluster: list[str], cluster: Any
) -> None:
    (deployment,) = [o for o in installed if o["kind"] == "Deployment"]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    env = [arg for e in init["env"] for arg in ("--env", f"{e['name']}={e['value']}")]
    entry, *args = init["command"]
    for _ in range(2):  # the second run finds it there (409) and still succeeds
        out = docker(
            "run", "--rm", *in_cluster, *env, "--entrypoint", entry, operator_image.tag, *args
        ).stdout
        assert "ClusterKopfPeering mlrollout present" in out
    cluster.kubectl("get", "clusterkopfpeerings.kopf.dev", "mlrollout")


@pytest.fixture
def operator_container(
    operator_image: BuiltImage, in_cluster: list[str], namespace: str, component_logs: LogSink
) -> Iterator[tuple[str, str]]:
    port = free_port()
    name = f"mlrollout-operator-test-{uuid.uuid4().hex[:8]}"
    container_id = docker(
        "run", "--detach", "--name", name, *in_cluster,
        "--env", f"MLROLLOUT_LIVENESS=http://127.0.0.1:{port}/healthz",
        # Nothing listens on port 9: the registry is not under test here.
        "--env", "MLROLLOUT_TRACKING_URI=http://127.0.0.1:9",
        "--env", f"POD_ID={name}",
        # Standalone and one namespace: it must not act on other tests' ModelDeployments.
        operator_image.tag, "--standalone", "--namespace", namespace,
    ).stdout.strip()  # fmt: skip
    try:
        yield container_id, f"http://127.0.0.1:{port}/healthz"
    finally:
        logs = docker("logs", container_id, check=False)
        component_logs.path("operator-container").write_text(logs.stdout + logs.stderr)
        docker("rm", "--force", container_id, check=False)


def wait_until(what: str, probe: Any, container_id: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        running = docker("inspect", "--format", "{{.State.Running}}", container_id).stdout.strip()
        if running != "true":
            logs = docker("logs", container_id, check=False)
            pytest.fail(f"operator container exited while waiting for {what}:\n{logs.stderr[-3000:]}")
        time.sleep(1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def test_operator_image_runs_in_cluster_with_only_the_installed_rbac(
    operator_container: tuple[str, str], cluster: Any, namespace: str
) -> None:
    container_id, healthz = operator_container

    def healthy() -> bool:
        try:
            return http("GET", healthz, timeout=2)[0] == 200
        except OSError:
            return False

    wait_until("the liveness endpoint", healthy, container_id)
    example = yaml.safe_load((ROOT / "examples" / "modeldeployment-minimal.yaml").read_text())
    example["metadata"]["namespace"] = namespace
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(example))
    name = example["metadata"]["name"]

    def handled() -> bool:
        jsonpath = "jsonpath={.metadata.finalizers} {.status.phase}"
        out = cluster.kubectl("-n", namespace, "get", "md", name, "-o", jsonpath).stdout
        return FINALIZER in out and bool(out.rsplit(" ", 1)[-1])

    try:
        # Watching, patching and writing status all worked under the operator's own RBAC (the
        # registry is unreachable on purpose: the phase says so without needing MLflow).
        assert wait_until("the operator's finalizer and status on the ModelDeployment", handled, container_id)
    finally:
        # Delete while the operator runs, so it releases its finalizer and the namespace can go.
        cluster.kubectl("-n", namespace, "delete", "md", name, "--wait=true", "--timeout=60s", check=False)
    logs = docker("logs", container_id).stderr
    assert "Forbidden" not in logs
    assert "403" not in logs


def shipped_operator(installed: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The operator container of the rendered Deployment and its plain environment."""
    (deployment,) = [o for o in installed if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (defaults,) = [
        o for o in installed if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mlrollout-defaults"
    ]
    env = {**defaults["data"], **{e["name"]: e["value"] for e in container["env"] if "value" in e}}
    return container, env


def peers(cluster: Any) -> dict[str, int]:
    out = cluster.kubectl("get", "clusterkopfpeerings.kopf.dev", "mlrollout", "-o", "json").stdout
    status = json.loads(out).get("status") or {}
    return {peer: int(info["priority"]) for peer, info in status.items() if isinstance(info, dict)}


def test_two_replicas_running_the_shipped_command_elect_one(
    operator_image: BuiltImage,
    installed: list[dict[str, Any]],
    in_cluster: list[str],
    cluster: Any,
    namespace: str,
    component_logs: LogSink,
) -> None:
    container, env = shipped_operator(installed)
    assert env["MLROLLOUT_METRICS_PORT"] == "9102"  # the install serves the operator's metrics
    create = cluster.kubectl("create", "-f", "-", input=PEERING_OBJECT, check=False)
    assert create.returncode == 0 or "AlreadyExists" in create.stderr, create.stderr
    replicas: list[tuple[str, str, str]] = []  # (container id, POD_ID, liveness URL)
    metrics_urls: list[str] = []
    try:
        for i in range(2):
            pod_id = f"mlrollout-operator-ha-{i}-{uuid.uuid4().hex[:6]}"
            # Host network: each replica needs its own liveness and metrics ports (in a cluster
            # every pod has its own network namespace and the shipped ports never collide).
            port, metrics_port = free_port(), free_port()
            replica_env = {
                **env,
                "MLROLLOUT_LIVENESS": f"http://127.0.0.1:{port}/healthz",
                "MLROLLOUT_METRICS_PORT": str(metrics_port),
                "MLROLLOUT_METRICS_ADDRESS": "127.0.0.1",
                "POD_ID": pod_id,
            }
            metrics_urls.append(f"http://127.0.0.1:{metrics_port}/metrics")
            env_args = [arg for k, v in replica_env.items() for arg in ("--env", f"{k}={v}")]
            entry, *command_args = container["command"]
            container_id = docker(
                "run", "--detach", "--name", pod_id, *in_cluster, *env_args, "--entrypoint", entry,
                operator_image.tag, *command_args, *container["args"],
            ).stdout.strip()  # fmt: skip
            replicas.append((container_id, pod_id, f"http://127.0.0.1:{port}/healthz"))

        for container_id, _, healthz in replicas:
            wait_until("the liveness endpoint", lambda url=healthz: _healthy(url), container_id)
        for url in metrics_urls:
            assert _healthy(url), url
        ids = {pod_id for _, pod_id, _ in replicas}

        def both_registered() -> dict[str, int]:
            seen = {p: prio for p, prio in peers(cluster).items() if p in ids}
            return seen if len(seen) == 2 else {}

        priorities = wait_until("both replicas in the peering object", both_registered, replicas[0][0])
        assert len(set(priorities.values())) == 2, f"equal priorities freeze both replicas: {priorities}"
        active = max(priorities, key=lambda p: priorities[p])
        standby = min(priorities, key=lambda p: priorities[p])
        by_id = {pod_id: container_id for container_id, pod_id, _ in replicas}

        # Exactly the higher-priority replica acts on a new ModelDeployment.
        example = yaml.safe_load((ROOT / "examples" / "modeldeployment-minimal.yaml").read_text())
        example["metadata"]["namespace"] = namespace
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(example))
        ref = f"{namespace}/{example['metadata']['name']}"
        try:

            def active_handled() -> bool:
                return ref in docker("logs", by_id[active]).stderr

            wait_until(f"the active replica to handle {ref}", active_handled, by_id[active])
        finally:
            cluster.kubectl(
                "-n", namespace, "delete", "md", example["metadata"]["name"], "--timeout=60s", check=False
            )
        assert ref not in docker("logs", by_id[standby]).stderr
    finally:
        for container_id, pod_id, _ in replicas:
            logs = docker("logs", container_id, check=False)
            component_logs.path(pod_id).write_text(logs.stdout + logs.stderr)
            docker("rm", "--force", container_id, check=False)


def _healthy(url: str) -> bool:
    try:
        return http("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


PEERING_OBJECT = "apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata:\n  name: mlrollout\n"

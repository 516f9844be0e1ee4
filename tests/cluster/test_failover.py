"""HA on kwok: two peered operator processes, the active one killed (SIGKILL) mid-rollout, the
standby finishes the rollout and recreates nothing, although a namespace it served was created and
deleted while it stood by (which used to leave kopf's index readiness held for good: see
mlrollout.operator.kopf_index_release). (The real-pod version, with load, belongs to the real-node
tier.)"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster.helpers import Kubectl, Models, model_deployment, wait_for
from support.procs import ManagedProcess, free_port

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
PEERING_CRDS = ROOT / "crds" / "kopf-peering.yaml"
N = 4
STEPS = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]


@pytest.fixture
def ha_namespace(cluster: Any) -> Iterator[str]:
    """Outside the shared standalone operator's t-* namespaces: only the peered pair serves it."""
    name = f"ha-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def start_peer(
    cluster: Any, namespaces: str, peering: str, priority: int, tracking_uri: str, logs: Any
) -> ManagedProcess:
    port = free_port()
    argv = [
        sys.executable,
        "-P",
        "-m",
        "mlrollout.operator",
        "--peering",
        peering,
        "--priority",
        str(priority),
        "--namespace",
        namespaces,
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
        "--verbose",  # kopf's peering decisions (pausing, resuming) are logged at debug level
    ]
    env = {
        **cluster.env(),
        "MLROLLOUT_TRACKING_URI": tracking_uri,
        "MLROLLOUT_PEERING_LIFETIME": "5",
        "MLROLLOUT_RESYNC_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
    }
    proc = ManagedProcess.start(f"operator-peer-{priority}", argv, env=env, cwd=ROOT, logs=logs)
    proc.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    return proc


def test_killing_the_active_replica_mid_rollout_the_standby_finishes_it(
    cluster: Any, crd: Path, ha_namespace: str, models: Models, mlflow_server: Any, component_logs: Any
) -> None:
    # The file holds the CRDs and a ClusterKopfPeering: the object applies once its CRD is served.
    cluster.kubectl("apply", "-f", str(PEERING_CRDS), check=False)
    for crd_name in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd_name}")
    cluster.kubectl("apply", "-f", str(PEERING_CRDS))
    kc = Kubectl(cluster, ha_namespace)
    # Replicas elect through a ClusterKopfPeering also with --namespace (handlers.configure keeps
    # the peering cluster-wide): one of our own, named after the namespace.
    peering = ha_namespace
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": peering}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    uri = mlflow_server.tracking_uri
    # A pattern, as installs that serve `team-*` use: the peers follow namespaces as they come and go.
    served = f"{ha_namespace}*"
    active = start_peer(cluster, served, peering, 200, uri, component_logs)
    standby = start_peer(cluster, served, peering, 100, uri, component_logs)
    try:

        def peers() -> dict[str, Any] | None:
            raw = cluster.kubectl("get", "clusterkopfpeering", peering, "-o", "json").stdout
            found = json.loads(raw).get("status") or {}
            return found if len(found) == 2 else None

        wait_for("both peers registered", peers)
        kc.apply(model_deployment("ha", models.v1.version, replicas=N, steps=STEPS))
        wait_for("v1 Promoted", lambda: kc.status("ha").get("phase") == "Promoted", timeout=90)
        kc.apply(model_deployment("ha", models.v2.version, replicas=N, steps=STEPS))
        wait_for(
            "canary paused at 50%",
            lambda: (s := kc.status("ha")).get("currentStepIndex") == 1 and s.get("phase") == "Paused",
            timeout=90,
        )
        # A served namespace that comes and goes while the standby is paused: its watchers never list.
        churn = f"{ha_namespace}-gone"
        cluster.kubectl("create", "namespace", churn)
        wait_for(
            "the standby follows the new namespace",
            lambda: churn in standby.log_path.read_text(),
            timeout=30,
        )
        cluster.kubectl("delete", "namespace", churn, "--wait=true", "--timeout=60s")
        uids = {k: v["uid"] for k, v in kc.deployments("ha").items()}
        svc_uid = json.loads(kc.run("get", "service", "ha", "-o", "json").stdout)["metadata"]["uid"]

        active.kill()  # no goodbye: the standby waits for the peering entry to expire (5 s)
        kc.plugin("promote", "ha")  # the rest of the rollout is the standby's job
        st = wait_for(
            "promoted by the standby",
            lambda: (s := kc.status("ha")).get("phase") == "Promoted" and s,
            timeout=120,
        )
        assert st["stable"]["version"] == models.v2.version
        assert {k: v["uid"] for k, v in kc.deployments("ha").items()} == uids  # nothing recreated
        assert json.loads(kc.run("get", "service", "ha", "-o", "json").stdout)["metadata"]["uid"] == svc_uid
        assert kc.replicas("ha") == {f"v{models.v1.version}": 0, f"v{models.v2.version}": N}
        assert sum(e.startswith("Promoted:") for e in kc.events("ha")) == 1
        # The standby stood by (its watches paused in favour of the active peer) and took over.
        assert "Resuming operations after the pause" in standby.log_path.read_text()
    finally:
        active.stop()
        standby.stop()
        cluster.kubectl("delete", "clusterkopfpeering", peering, "--ignore-not-found", check=False)

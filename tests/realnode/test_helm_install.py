"""`helm install` of charts/mlrollout on the real node: the operator's pods pull nothing (the image
is in the node's containerd, `image.pullPolicy=Never`), are placed on the real node by their
namespace's annotations (`namespace.annotations`, what manifests/overlays/local patches in), run
under the restricted Pod Security level, become Ready on the real kubelet, elect through their own
peering object and handle a ModelDeployment (status and an Event) in the one namespace they watch
(a Role there; cluster-wide only CRDs, namespaces and the peering). `helm uninstall` then leaves
nothing behind.

The release sits beside this session's kustomize install (installed_operator): its own namespace,
names and peering; the CRDs are shared, applied from the chart's template first and not owned by
the release."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import real_node
from manifests.test_helm import CHART, Helm, helm, leftovers, wait_until  # noqa: F401 - helm: a fixture

pytestmark = pytest.mark.realnode


def test_helm_install_runs_the_operator_on_real_pods_and_uninstalls_cleanly(
    helm: Helm,  # noqa: F811 - the fixture imported above
    node: Any,
    node_image: Any,
    tmp_path: Path,
) -> None:
    image = node_image("mlrollout-operator")
    suffix = uuid.uuid4().hex[:5]
    # The namespace it serves: not r-* (this session's kustomize install serves those). No serving
    # pod is started there, so it need not be placed on the real node.
    watched = f"helm-watched-{suffix}"
    node.kubectl("create", "namespace", watched)
    repository, tag = image.rsplit(":", 1)
    release, ns, name = f"helm-real-{suffix}", f"helm-real-{suffix}", f"mlrollout-helm-{suffix}"
    crds = helm.run("template", "mlrollout", str(CHART), "--show-only", "templates/crds.yaml").stdout
    node.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crds)
    for crd in ("modeldeployments.mlrollout.io", "clusterkopfpeerings.kopf.dev"):
        node.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    toleration = [{"key": real_node.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    values = {
        "fullnameOverride": name,
        "namespace": {
            "name": ns,
            "create": True,
            "annotations": {
                "scheduler.alpha.kubernetes.io/node-selector": f"{real_node.NODE_LABEL}=real",
                "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(toleration),
            },
        },
        "crds": {"enabled": False},
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "peering": {"name": name, "lifetimeSeconds": 10},
        "watchNamespaces": [watched],
        # Nothing answers here: the ModelDeployment below is handled, never rolled out.
        "config": {"trackingUri": "http://127.0.0.1:9"},
    }
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    t0 = time.monotonic()
    installed = helm.run(
        "install", release, str(CHART), "--namespace", "default", "-f", str(values_file),
        "--wait", "--timeout", "300s", kubeconfig=node.kubeconfig, check=False, timeout=360,
    )  # fmt: skip
    install_seconds = time.monotonic() - t0
    print(f"\n[helm] install --wait on the real node in {install_seconds:.1f}s", flush=True)
    md = f"helm-md-{suffix}"
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        pods = json.loads(
            node.kubectl(
                "-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=mlrollout-operator", "-o", "json"
            ).stdout
        )["items"]
        assert len(pods) == 2
        for pod in pods:
            assert pod["spec"]["nodeName"] == real_node.NODE_NAME, pod["spec"].get("nodeName")
            ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
            assert ready["Ready"] == "True", pod["metadata"]["name"]
            assert all(c["ready"] for c in pod["status"]["containerStatuses"])
            assert pod["spec"]["containers"][0]["image"] == image

        # The init container created this release's own peering object; both replicas are in it.
        def peers() -> int:
            got = node.kubectl("get", "clusterkopfpeering", name, "-o", "json", check=False)
            return len(json.loads(got.stdout).get("status") or {}) if got.returncode == 0 else 0

        wait_until(lambda: peers() == 2, 60, f"both replicas in ClusterKopfPeering {name}")
        # The operator handles a ModelDeployment in its watched namespace with its Role there: it
        # watches it, writes its status (the registry is unreachable: RegistryReachable False,
        # phase Pending) and posts an Event.
        manifest = {
            "apiVersion": "mlrollout.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": md, "namespace": watched},
            "spec": {
                "model": {"name": "iris", "alias": "champion"},
                "serving": {"image": "mlrollout-serving:none"},
            },
        }
        node.kubectl("apply", "-f", "-", input=json.dumps(manifest))

        def handled() -> bool:
            got = node.kubectl("-n", watched, "get", "modeldeployment", md, "-o", "json", check=False)
            status = json.loads(got.stdout).get("status") or {} if got.returncode == 0 else {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            return conditions.get("RegistryReachable") == "False"

        wait_until(handled, 90, f"the helm-installed operator to handle {watched}/{md}")
        events = node.kubectl(
            "-n", watched, "get", "events", "-o", "name",
            "--field-selector", f"involvedObject.name={md}",
        ).stdout  # fmt: skip
        assert events.strip(), f"no Event on {md}"
        # ... and it was this release's pods that did (no other operator watches this namespace).
        logs = node.kubectl(
            "-n", ns, "logs", "-l", "app.kubernetes.io/name=mlrollout-operator", "-c", "operator", "--tail=-1"
        ).stdout  # fmt: skip
        assert md in logs
        node.kubectl("-n", watched, "delete", "modeldeployment", md, "--timeout=90s", timeout=120)
    finally:
        node.kubectl("-n", watched, "delete", "md", md, "--ignore-not-found", "--wait=false", check=False)
        t0 = time.monotonic()
        removed = helm.run(
            "uninstall", release, "--namespace", "default", "--wait", "--timeout", "180s",
            kubeconfig=node.kubeconfig, check=False, timeout=240,
        )  # fmt: skip
        print(f"[helm] uninstall --wait on the real node in {time.monotonic() - t0:.1f}s", flush=True)
        # The peering object is the init container's, not the release's: remove it like an operator would.
        node.kubectl("delete", "clusterkopfpeering", name, "--ignore-not-found", check=False)
        node.kubectl("delete", "namespace", watched, "--wait=false", "--ignore-not-found", check=False)
    assert removed.returncode == 0, removed.stderr
    wait_until(
        lambda: node.kubectl("get", "namespace", ns, check=False).returncode != 0,
        180,
        f"namespace {ns} to go",
    )
    assert leftovers(node, release) == []

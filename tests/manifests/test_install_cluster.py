"""The install against a real API server: `kubectl apply -k manifests/` in one shot, a server-side
dry run of the same, the operator Deployment admitted under the namespace's `restricted` Pod
Security level, and `kubectl auth can-i` as the operator's ServiceAccount proving it can do what
operator/RBAC.md lists and nothing it should not (Secrets above all)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from manifests.rendering import MANIFESTS, NAMESPACE, ROOT, SERVICE_ACCOUNT, Grant, documented_grants

pytestmark = pytest.mark.cluster

AS_OPERATOR = f"--as=system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
# Not needed by a cluster-wide install (see manifests/base/rbac.yaml).
NOT_CLUSTER_WIDE = {("kopf.dev", "kopfpeerings")}
CLUSTER_SCOPED = {"customresourcedefinitions", "clusterkopfpeerings", "namespaces"}


@pytest.fixture(scope="module")
def installed(cluster: Any) -> Any:
    """The real install (idempotent: other tests may have applied the CRDs already)."""
    applied = cluster.kubectl("apply", "-k", str(MANIFESTS), check=False, timeout=180)
    assert applied.returncode == 0, applied.stderr
    return cluster


def can_i(cluster: Any, verb: str, resource: str, *extra: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", verb, resource, AS_OPERATOR, *extra, check=False)
    answer = proc.stdout.strip()
    assert answer in {"yes", "no"}, f"can-i {verb} {resource}: {proc.stdout} {proc.stderr}"
    return answer == "yes"


def allowed(cluster: Any, grant: Grant, namespace: str) -> bool:
    """A SubjectAccessReview for the operator's ServiceAccount: exact group/resource/subresource,
    so it also answers for APIs this cluster does not serve (the Gateway API's httproutes here),
    which `kubectl auth can-i` cannot resolve without discovery."""
    resource, _, subresource = grant.resource.partition("/")
    attributes = {"verb": grant.verb, "group": grant.group, "resource": resource, "subresource": subresource}
    if resource not in CLUSTER_SCOPED:
        attributes["namespace"] = namespace
    if resource == "clusterkopfpeerings" and grant.verb in {"get", "patch"}:
        attributes["name"] = "mlrollout"  # granted by name only
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}",
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{NAMESPACE}",
                "system:authenticated",
            ],
            "resourceAttributes": attributes,
        },
    }
    proc = cluster.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review))
    return bool(json.loads(proc.stdout)["status"].get("allowed"))


def grant_args(grant: Grant, namespace: str) -> tuple[str, list[str]]:
    """kubectl auth can-i arguments for a documented grant ("modeldeployments/status" etc.)."""
    resource, _, subresource = grant.resource.partition("/")
    qualified = f"{resource}.{grant.group}" if grant.group else resource
    extra = [] if resource in CLUSTER_SCOPED else ["-n", namespace]
    if subresource:
        extra.append(f"--subresource={subresource}")
    if resource == "clusterkopfpeerings" and grant.verb in {"get", "patch"}:
        qualified += "/mlrollout"  # granted by name only
    return qualified, extra


def test_install_applies_in_one_shot_and_dry_runs_clean(installed: Any) -> None:
    dry = installed.kubectl("apply", "-k", str(MANIFESTS), "--dry-run=server", check=False, timeout=180)
    assert dry.returncode == 0, dry.stderr
    assert "(server dry run)" in dry.stdout
    for kind_name in (
        "deployment/mlrollout-operator",
        "serviceaccount/mlrollout-operator",
        "configmap/mlrollout-defaults",
    ):
        installed.kubectl("-n", NAMESPACE, "get", kind_name)
    for crd in ("modeldeployments.mlrollout.io", "clusterkopfpeerings.kopf.dev"):
        installed.kubectl("get", "crd", crd)


def test_operator_pods_are_admitted_under_restricted_pod_security(installed: Any) -> None:
    level = installed.kubectl(
        "get",
        "namespace",
        NAMESPACE,
        "-o",
        "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}",
    ).stdout
    assert level == "restricted"
    # The level is enforced here (a plain root pod is refused), so admission below means something.
    plain = installed.kubectl(
        "-n", NAMESPACE, "run", "plain-root-pod", "--image=busybox", "--dry-run=server", check=False
    )  # fmt: skip
    assert plain.returncode != 0
    assert "violates PodSecurity" in plain.stderr
    # Pods that broke the restricted profile would be refused (FailedCreate), never created.
    # (Created, not Ready: readiness on fake nodes says nothing about admission.)
    deadline = time.monotonic() + 90
    pods: list[str] = []
    while time.monotonic() < deadline and len(pods) < 2:
        pods = installed.kubectl(
            "-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=mlrollout-operator",
            "-o", "jsonpath={.items[*].metadata.name}",
        ).stdout.split()  # fmt: skip
        time.sleep(1)
    events = installed.kubectl(
        "-n", NAMESPACE, "get", "events", "--field-selector", "reason=FailedCreate", "-o", "name"
    ).stdout
    assert events == ""
    assert len(pods) >= 2


def test_the_same_manifests_would_uninstall_cleanly(installed: Any) -> None:
    dry = installed.kubectl("delete", "-k", str(MANIFESTS), "--dry-run=server", check=False, timeout=180)
    assert dry.returncode == 0, dry.stderr
    assert "deleted (server dry run)" in dry.stdout


def test_operator_can_do_everything_it_documents(installed: Any, namespace: str) -> None:
    grants = [
        g
        for g in documented_grants(ROOT / "operator" / "RBAC.md")
        if (g.group, g.resource) not in NOT_CLUSTER_WIDE
    ]
    assert len(grants) > 10
    denied = []
    for grant in grants:
        resource, extra = grant_args(grant, namespace)
        if not allowed(installed, grant, namespace):
            denied.append(f"{grant.verb} {resource} {' '.join(extra)}")
    assert denied == []


@pytest.mark.parametrize(
    ("verb", "resource", "extra"),
    [
        ("get", "secrets", ["--all-namespaces"]),
        ("list", "secrets", ["--all-namespaces"]),
        ("watch", "secrets", ["--all-namespaces"]),
        ("get", "secrets", ["-n", NAMESPACE]),
        ("list", "secrets", ["-n", "kube-system"]),
        ("get", "configmaps", ["--all-namespaces"]),
        ("create", "pods", ["--all-namespaces"]),
        ("delete", "pods", ["--all-namespaces"]),
        ("create", "pods/exec", ["--all-namespaces"]),
        ("delete", "services", ["--all-namespaces"]),
        ("deletecollection", "deployments.apps", ["--all-namespaces"]),
        ("create", "namespaces", []),
        ("delete", "namespaces", []),
        ("patch", "namespaces", []),
        ("get", "nodes", []),
        ("create", "serviceaccounts/token", ["--all-namespaces"]),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", []),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", []),
        ("impersonate", "users", []),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", []),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", []),
        ("patch", "clusterkopfpeerings.kopf.dev/someone-else", []),
        ("delete", "modeldeployments.mlrollout.io", ["--all-namespaces"]),
        ("create", "statefulsets.apps", ["--all-namespaces"]),
        # The nginx router creates, patches and deletes its own canary Ingress; it never lists,
        # watches or updates Ingresses, and touches no other networking objects.
        ("list", "ingresses.networking.k8s.io", ["--all-namespaces"]),
        ("update", "ingresses.networking.k8s.io", ["--all-namespaces"]),
        ("create", "networkpolicies.networking.k8s.io", ["--all-namespaces"]),
    ],
)
def test_operator_cannot_touch_what_it_does_not_manage(
    installed: Any, verb: str, resource: str, extra: list[str]
) -> None:
    assert not can_i(installed, verb, resource, *extra)

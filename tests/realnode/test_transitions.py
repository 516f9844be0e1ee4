"""Transitions of which pods serve, under continuous load through the Service: a promotion, an
abort at 50%, an undo to a kept version, a rollback at 100% and a new target mid-rollout, all on
real pods driven by the installed operator. Every response is checked by the load generator (a pod);
the test prints the counts and asserts that not one request failed across all of them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster.helpers import Kubectl
from local_cluster import LocalCluster
from realpods import LoadJob, wait_until
from support.mlflow_models import train_and_register
from test_rollout import Md, model_deployment

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1800)]
REPLICAS = 2


def steps() -> list[dict[str, Any]]:
    return [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}, {"pause": {}}]


def test_no_request_fails_across_promotion_abort_undo_rollback_and_a_new_target(
    node: LocalCluster, real_namespace: str, node_image: Any, node_mlflow: Any, installed_operator: Any
) -> None:
    uri = node_mlflow.tracking_uri
    v1, v2, v3, v4 = (train_and_register(uri, "node-transitions", seed=s) for s in (0, 1, 2, 3))
    kc = Kubectl(node, real_namespace)
    md = Md(node, real_namespace, "steady")
    manifest = model_deployment(
        md.name, v1.version, node_image("mlrollout-serving"), node_mlflow.in_cluster_uri
    )
    manifest["spec"]["model"]["name"] = v1.name
    manifest["spec"]["serving"]["replicas"] = REPLICAS
    manifest["spec"]["rollout"]["steps"] = steps()

    def target(version: str) -> None:
        manifest["spec"]["model"]["version"] = version
        kc.apply(manifest)

    def stable_is(version: str) -> Any:
        def probe() -> Any:
            s = md.status()
            return (
                s
                if s.get("phase") == "Promoted" and (s.get("stable") or {}).get("version") == version
                else None
            )

        return probe

    def serving_only(version: str) -> Any:
        return lambda: md.ready_by_version() == {version: REPLICAS}

    kc.apply(manifest)
    wait_until("v1 stable on every replica", serving_only(v1.version), 300)
    rows = [{"features": r, "label": None} for r in v1.sample_rows]
    service = f"http://{md.name}.{real_namespace}:8080"
    load = LoadJob(
        node, real_namespace, node_image("mlrollout-loadgen"), service, rows, users=3, seconds=1200
    )
    load.wait_running()
    done: list[str] = []

    # 1. promotion: canary at 50%, then straight to stable.
    target(v2.version)
    md.wait_step(1, 50, canary=v2.version)
    kc.plugin("promote", md.name, "--full")
    wait_until("v2 promoted", stable_is(v2.version), 300)
    wait_until("only v2 serving", serving_only(v2.version), 300)
    done.append("promotion")

    # 2. abort at 50%: the canary goes, the stable side is whole again.
    target(v3.version)
    md.wait_step(1, 50, canary=v3.version)
    kc.plugin("abort", md.name)
    wait_until("v3 rolled back", lambda: md.status().get("phase") == "RolledBack", 300)
    wait_until("only v2 serving", serving_only(v2.version), 300)
    done.append("abort at 50%")

    # 3. undo to a kept version (v1, kept at 0 replicas).
    kc.plugin("undo", md.name, "--to-version", v1.version)
    wait_until("v1 stable again", stable_is(v1.version), 300)
    wait_until("only v1 serving", serving_only(v1.version), 300)
    done.append("undo")

    # 4. a new target mid-rollout: v2 at 50%, then v4 replaces it before it finishes.
    target(v2.version)
    md.wait_step(1, 50, canary=v2.version)
    target(v4.version)
    md.wait_step(1, 50, canary=v4.version)
    done.append("new target mid-rollout")

    # 5. rollback at 100%: v4 carries all traffic, then is aborted back to v1.
    kc.plugin("promote", md.name)
    md.wait_step(3, 100, canary=v4.version)
    wait_until("only v4 serving", serving_only(v4.version), 300)
    kc.plugin("abort", md.name)
    wait_until("v4 rolled back", lambda: md.status().get("phase") == "RolledBack", 300)
    wait_until("only v1 serving", serving_only(v1.version), 300)
    done.append("rollback at 100%")

    load.stop()
    result = load.result(timeout=180)
    print(f"\n[transitions] {', '.join(done)}: {json.dumps(result.summary, sort_keys=True)}")
    assert result.summary["requests"] > 0
    assert result.failed == 0, result.summary["failures"]
    assert set(result.by_version) >= {v1.version, v2.version, v4.version}

"""Operator v2 on kwok with the real control plane: transitions bring the incoming pods to Ready
before the outgoing side is scaled down, and canary analysis never promotes on no evidence.

kwok makes pods Ready as soon as they are scheduled, so the readiness *lag* is table-tested in the
planner (tests/operator/test_planner.py); here the order of API events is checked: a watch records
every change of the serving pods, and at the moment an outgoing pod begins terminating the incoming
side must already have all its pods Ready. An operator that scaled both in one pass fails this on
kwok too: the outgoing pods go before any incoming pod exists.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cluster.helpers import Kubectl, Models, Operator, model_deployment, wait_for
from support.procs import free_port

pytestmark = pytest.mark.cluster

N = 4  # replicas: small, so each transition is quick on kwok
HOLD = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}, {"pause": {}}]


@dataclass(frozen=True)
class PodState:
    version: str
    ready: bool  # its Ready condition is True
    terminating: bool  # it has a deletionTimestamp


@dataclass(frozen=True)
class Removal:
    """A serving pod of `version` began terminating, with the Ready pods of each version then."""

    pod: str
    version: str
    ready_by_version: dict[str, int]


@dataclass
class PodWatch:
    """`kubectl get pods --watch` for one ModelDeployment's serving pods, every event in order.

    One stream of one resource type, so its order is the order the apiserver applied the changes:
    when an outgoing pod starts terminating, the Ready pods seen before it are the ones that serve.
    (The Deployments' readyReplicas are not the oracle: they repeat the pods two controllers later.)"""

    kc: Kubectl
    md: str
    removals: list[Removal] = field(default_factory=list)
    events: int = 0
    _pods: dict[str, PodState] = field(default_factory=dict)
    _proc: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> PodWatch:
        self._proc = subprocess.Popen(
            [
                "kubectl",
                "get",
                "pods",
                "-n",
                self.kc.ns,
                "-l",
                f"mlrollout.io/model-deployment={self.md}",
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.kc.env,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_for("the watch lists the current pods", lambda: self.events > 0)
        return self

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                self._on(event["type"], event["object"])

    def _on(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        conditions = (pod.get("status") or {}).get("conditions") or []
        now = PodState(
            meta["labels"]["mlrollout.io/version"],
            any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
            kind == "DELETED" or bool(meta.get("deletionTimestamp")),
        )
        before = self._pods.get(meta["name"])
        if now.terminating and before is not None and not before.terminating:
            serving = [
                p.version
                for n, p in self._pods.items()
                if n != meta["name"] and p.ready and not p.terminating
            ]
            self.removals.append(Removal(meta["name"], now.version, dict(Counter(serving))))
        if kind == "DELETED":
            self._pods.pop(meta["name"], None)
        else:
            self._pods[meta["name"]] = now
        self.events += 1

    def drained(self, version: str) -> bool:
        """Every pod of `version` the watch has seen has begun terminating (or is gone): the wait to
        make before leaving the watch, since the Deployment's spec says 0 before its pods hear of it."""
        return not any(p.version == version and not p.terminating for p in list(self._pods.values()))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        if self._thread is not None:
            self._thread.join(timeout=30)


def paused_at(kc: Kubectl, name: str, index: int) -> Callable[[], Any]:
    def probe() -> Any:
        st = kc.status(name)
        return st if st.get("currentStepIndex") == index and st.get("phase") == "Paused" else None

    return probe


def canary_at(kc: Kubectl, name: str, models: Models, weight: int) -> None:
    """Stable v1 with N pods, then canary v2 walked to `weight` and paused there."""
    kc.apply(model_deployment(name, models.v1.version, replicas=N, steps=HOLD))
    wait_for("v1 Promoted", lambda: kc.status(name).get("phase") == "Promoted")
    kc.apply(model_deployment(name, models.v2.version, replicas=N, steps=HOLD))
    wait_for("canary at 50%", paused_at(kc, name, 1))
    if weight == 100:
        kc.plugin("promote", name)
        wait_for("canary at 100%", paused_at(kc, name, 3))


def assert_incoming_ready_first(watch: PodWatch, outgoing: str, incoming: dict[str, int]) -> None:
    downs = [r for r in watch.removals if r.version == outgoing]
    assert downs, f"no pod of version {outgoing} was removed: {watch.removals}"
    for removal in downs:
        for version, want in incoming.items():
            have = removal.ready_by_version.get(version, 0)
            assert have >= want, (
                f"pod {removal.pod} of version {outgoing} began terminating while version {version} had "
                f"{have}/{want} pods Ready: {watch.removals}"
            )


@pytest.mark.parametrize(
    ("weight", "action", "outgoing", "incoming", "final"),
    [
        (100, "abort", "v2", {"v1": N}, {"v1": N}),  # a rollback at 100: stable scaled up from 0 first
        (50, "abort", "v2", {"v1": N}, {"v1": N}),
        (50, "promote --full", "v1", {"v2": N}, {"v1": 0, "v2": N}),
    ],
)
def test_transition_scales_outgoing_down_only_after_incoming_is_ready(
    running_operator: Operator,
    kc: Kubectl,
    models: Models,
    weight: int,
    action: str,
    outgoing: str,
    incoming: dict[str, int],
    final: dict[str, int],
) -> None:
    name = f"tr-{weight}-{action.split(maxsplit=1)[0]}"
    canary_at(kc, name, models, weight)
    versions = {"v1": models.v1.version, "v2": models.v2.version}
    with PodWatch(kc, name) as watch:
        kc.plugin(*action.split(), name)
        want = {f"v{versions[k]}": n for k, n in final.items()}
        wait_for(f"{action}: serving {want}", lambda: kc.replicas(name) == want, timeout=90)
        wait_for(
            "every pod Ready", lambda: all(d["ready"] == d["replicas"] for d in kc.deployments(name).values())
        )
        wait_for(f"every {outgoing} pod terminating", lambda: watch.drained(versions[outgoing]))
    assert_incoming_ready_first(watch, versions[outgoing], {versions[k]: n for k, n in incoming.items()})


def test_undo_keeps_the_current_stable_until_the_kept_version_is_ready(
    running_operator: Operator, kc: Kubectl, models: Models
) -> None:
    canary_at(kc, "tr-undo", models, 50)
    kc.plugin("promote", "--full", "tr-undo")
    v1, v2 = models.v1.version, models.v2.version
    wait_for("v2 stable", lambda: kc.replicas("tr-undo") == {f"v{v1}": 0, f"v{v2}": N}, timeout=90)
    with PodWatch(kc, "tr-undo") as watch:
        kc.plugin("undo", "tr-undo")
        wait_for("v1 serving again", lambda: kc.replicas("tr-undo") == {f"v{v1}": N, f"v{v2}": 0}, timeout=90)
        wait_for("every v2 pod terminating", lambda: watch.drained(v2))
    assert_incoming_ready_first(watch, v2, {v1: N})


def test_new_target_mid_rollout_drains_the_old_canary_after_the_new_sides_are_ready(
    running_operator: Operator, kc: Kubectl, models: Models
) -> None:
    canary_at(kc, "tr-retarget", models, 50)
    v1, v3 = models.v1.version, models.v3.version
    with PodWatch(kc, "tr-retarget") as watch:
        kc.apply(model_deployment("tr-retarget", v3, replicas=N, steps=HOLD))
        wait_for("v3 canary at 50%", paused_at(kc, "tr-retarget", 1), timeout=90)
        wait_for(
            "old canary gone", lambda: set(kc.replicas("tr-retarget")) == {f"v{v1}", f"v{v3}"}, timeout=90
        )
        wait_for("every old canary pod terminating", lambda: watch.drained(models.v2.version))
    assert kc.status("tr-retarget")["canary"]["version"] == v3
    # The old canary went only once stable and the new canary had their shares (50% of N) Ready.
    assert_incoming_ready_first(watch, models.v2.version, {v1: N // 2, v3: N // 2})


# --------------------------------------------------------------------------- analysis policy
def analysis(address: str | None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "interval": "2s",
        "minSamples": 10,
        "metrics": [{"name": "errorRate", "max": 0.01}],
    }
    if address is not None:
        raw["prometheus"] = {"address": address, "timeoutSeconds": 1}
    return {**raw, **extra}


def test_inconclusive_analysis_without_an_analysis_step_is_never_promoted(
    running_operator: Operator, kc: Kubectl, models: Models
) -> None:
    """No Prometheus answers: every run is Inconclusive. The steps have no analysis step (and no
    pause), yet the canary must hold, Paused with a typed reason, instead of being promoted."""
    name = "no-evidence"
    kc.apply(model_deployment(name, models.v1.version, replicas=N))
    wait_for("v1 Promoted", lambda: kc.status(name).get("phase") == "Promoted")
    manifest = model_deployment(
        name, models.v2.version, replicas=N, steps=[{"setWeight": 50}, {"setWeight": 100}]
    )
    manifest["spec"]["rollout"]["analysis"] = analysis(f"http://127.0.0.1:{free_port()}")
    kc.apply(manifest)
    st = wait_for(
        "held on inconclusive analysis",
        lambda: (s := kc.status(name)).get("pauseReason") == "AnalysisInconclusive" and s,
        timeout=90,
    )
    assert st["phase"] == "Paused"
    assert st["stable"]["version"] == models.v1.version
    assert st["canary"]["version"] == models.v2.version
    last = st["lastAnalysis"]
    assert (last["verdict"], last["canaryVersion"]) == ("Inconclusive", models.v2.version)
    assert last["canaryRevision"] == st["canary"]["servingHash"]
    assert not any(e.startswith("Promoted:") for e in kc.events(name))


def test_invalid_analysis_spec_is_one_condition_and_one_event(
    running_operator: Operator, kc: Kubectl, models: Models
) -> None:
    """No Prometheus address in the spec and none configured for the operator: the analysis cannot
    run. That is one AnalysisValid=False condition and one Warning, however often it reconciles."""
    name = "bad-analysis"
    kc.apply(model_deployment(name, models.v1.version, replicas=N))
    wait_for("v1 Promoted", lambda: kc.status(name).get("phase") == "Promoted")
    steps = [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]
    manifest = model_deployment(name, models.v2.version, replicas=N, steps=steps)
    manifest["spec"]["rollout"]["analysis"] = analysis(None)
    kc.apply(manifest)
    st = wait_for(
        "paused: analysis invalid",
        lambda: (s := kc.status(name)).get("pauseReason") == "AnalysisInvalid" and s,
        timeout=90,
    )
    valid = next(c for c in st["conditions"] if c["type"] == "AnalysisValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidAnalysisSpec")
    assert "prometheus.address is required" in valid["message"]
    for limit in (4, 5, 3):  # three more reconciles, each seen through observedGeneration
        manifest["spec"]["revisionHistoryLimit"] = limit
        kc.apply(manifest)
        generation = kc.md(name)["metadata"]["generation"]
        wait_for("reconciled", lambda g=generation: kc.status(name).get("observedGeneration") == g)
    out = json.loads(
        kc.run("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    )
    warnings = [e for e in out["items"] if e.get("reason") == "AnalysisInvalid"]
    assert sum(int(e.get("count") or 1) for e in warnings) == 1, warnings
    assert kc.status(name)["phase"] == "Paused"

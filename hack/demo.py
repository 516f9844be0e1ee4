#!/usr/bin/env python3
"""`make demo`: the local stack with a real kubelet node, then a guided rollout on real pods: a
version rejected by its gate, a canary promoted on live metrics, an erroring canary rolled back.

python hack/demo.py          # bring the stack up (idempotent) and walk through a rollout (unattended)
python hack/demo.py up       # only bring the stack up
python hack/demo.py down     # stop everything the demo started: processes, pods, mounts, bridge, rules

Stack (hack/real_stack.py, the same code the real-pod tests use; state under .local/): the local
control plane with the real node (containerd, CNI bridge, kube-proxy, kubelet, CoreDNS); the
serving, operator and load-generator images built from this checkout and imported into the node's
containerd; MLflow serving its artifacts on the node's bridge behind the Service mlflow.mlflow:5000;
Prometheus 3 discovering pods through the Kubernetes API with the shipped scrape config, behind
prometheus.monitoring:9090; the operator installed with `kubectl apply -k` of the local overlay
(2 peered pods). The demo namespace's pods land on the real node by admission.

Walkthrough: four model versions registered in MLflow; the ModelDeployment applied; locust in a Job
pod calls the serving Service (about 40 requests/s, each answer's true label posted back through the
same Service, for live F1). Everything narrated comes from what the ModelDeployment's status, its
Events and the load generator's summary reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
STATE = ROOT / ".local"
sys.path[:0] = [str(HACK), str(ROOT / "tests")]

import node_images  # noqa: E402
import real_node  # noqa: E402
import real_stack  # noqa: E402
from local_cluster import ClusterError, LocalCluster  # noqa: E402
from real_stack import (  # noqa: E402
    HostProcess,
    InstalledOperator,
    KubePrometheus,
    LoadJob,
    LoadResult,
    NodeMlflow,
    StackError,
    kubectl_json,
)

CLUSTER_STATE = STATE / "cluster"
LOGS = STATE / "demo"
MLFLOW_DIR = STATE / "node-mlflow"
PROM_DIR = STATE / "kube-prometheus"
INSTALL_DIR = STATE / "install"
IMAGES = ("mlrollout-serving", "mlrollout-operator", "mlrollout-loadgen")
NAMESPACE = "mlrollout-demo"
MD = "churn"
MODEL = "demo-churn"
STAGE_TIMEOUT = 300.0  # seconds for any one stage of the walkthrough
LOAD_SECONDS = 900  # each load Job's own bound; the demo stops them sooner

# What a user would write; {placeholders} are this stack's. Fast analysis so the demo takes
# minutes: measure every 3 s over 10 s; 30 s at 50% before the analysis step must pass.
MANIFEST = """
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {{name: {md}}}
spec:
  model: {{name: {model}, version: "{version}"}}
  gate: {{metric: f1_score, threshold: 0.8}}
  serving:
    image: {image}
    replicas: 2
    env:
      - {{name: MLFLOW_TRACKING_URI, value: "{mlflow}"}}
      - {{name: MLROLLOUT_WORKERS, value: "1"}}
      # models-from-code (the erroring version) load Python code: an explicit trust decision
      - {{name: MLROLLOUT_ALLOW_PICKLE, value: "true"}}
    resources: {{requests: {{cpu: 50m, memory: 200Mi}}, limits: {{memory: 1Gi}}}}
  rollout:
    steps:
      - setWeight: 50
      - pause: {{duration: 30s}}
      - analysis: {{}}
      - setWeight: 100
    progressDeadlineSeconds: 300
    analysis:
      interval: 3s
      window: 10s
      minSamples: 15
      failureLimit: 2
      prometheus: {{address: "{prometheus}", timeoutSeconds: 2}}
      metrics:
        - {{name: errorRate, max: 0.05}}
        - {{name: liveF1, min: 0.8, maxRegression: 0.1}}
        - {{name: latencyP99Ms, max: 2000}}
"""


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def explain(text: str) -> None:
    for line in text.strip().splitlines():
        print(f"    {line.strip()}", flush=True)


# --------------------------------------------------------------------------- up / down
@dataclass
class Stack:
    cluster: LocalCluster
    images: dict[str, str]
    mlflow: NodeMlflow
    prometheus: KubePrometheus
    operator: InstalledOperator


def stack_up() -> Stack:
    missing = real_node.missing_prerequisites()
    if missing:
        raise SystemExit(
            "the demo runs real pods on a local kubelet node, which needs: " + "; ".join(missing)
        )
    cluster = LocalCluster(state=CLUSTER_STATE, real_node=True)
    t = time.monotonic()
    try:
        cluster.up(join_node=False)
        repair_kubernetes_endpoints(cluster)
        cluster.join_real_node()
        print(f"    control plane and real node Ready in {time.monotonic() - t:.0f}s", flush=True)
        images: dict[str, str] = {}
        for name in IMAGES:
            image = node_images.ensure_project_image(name, LOGS / "images")
            images[name] = image.ref
            made = f"built and imported in {image.seconds:.0f}s" if image.seconds else "already imported"
            print(f"    image {image.ref}: {made}", flush=True)
        t = time.monotonic()
        mlflow = real_stack.node_mlflow(cluster, MLFLOW_DIR, LOGS / "mlflow.log")
        prometheus = KubePrometheus(cluster.kubeconfig, LOGS / "prometheus.log", workdir=PROM_DIR)
        prometheus.publish(cluster)
        print(f"    MLflow and Prometheus answering in {time.monotonic() - t:.0f}s", flush=True)
        t = time.monotonic()
        operator = real_stack.install_operator(cluster, images["mlrollout-operator"], INSTALL_DIR)
        print(f"    operator rolled out in {time.monotonic() - t:.0f}s", flush=True)
    except (ClusterError, real_node.NodeError, StackError) as exc:
        raise SystemExit(
            f"demo: the stack did not come up: {exc}\n(stop what did: python hack/demo.py down)"
        ) from exc
    return Stack(cluster, images, mlflow, prometheus, operator)


def repair_kubernetes_endpoints(cluster: LocalCluster) -> None:
    """The `kubernetes` Service's endpoint must carry the apiserver's current port. The demo's etcd
    outlives its apiserver: when `up` follows `down` within TCP's TIME_WAIT, hack/local_cluster.py
    cannot keep the apiserver's port, and the apiserver's lease reconciler fixes addresses but never
    ports, so pods (CoreDNS first) would dial the old port. Deleted, the apiserver recreates both."""
    server = json.loads(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    port = int(server.rsplit(":", 1)[1])

    def ports() -> set[int]:
        eps = cluster.kubectl("-n", "default", "get", "endpoints", "kubernetes", "-o", "json", check=False)
        subsets = json.loads(eps.stdout or "{}").get("subsets") or []
        return {int(p["port"]) for s in subsets for p in s.get("ports", [])}

    if ports() in ({port}, set()):
        return
    print(f"    the kubernetes Service pointed at an earlier apiserver port; recreating it for {port}")
    cluster.kubectl("-n", "default", "delete", "endpoints,endpointslices", "kubernetes", check=False)
    real_stack.poll("the kubernetes endpoints on the current port", lambda: ports() == {port}, 60)


def down() -> None:
    cluster = LocalCluster(state=CLUSTER_STATE, real_node=True)
    if cluster.kubeconfig.exists():
        # Its serving pods must not come back with the next `up` (the namespace controller finishes).
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
    HostProcess("mlflow", MLFLOW_DIR, LOGS / "mlflow.log").stop()
    HostProcess("prometheus", PROM_DIR, LOGS / "prometheus.log").stop()
    cluster.down()  # pods, kubelet, containers, containerd, mounts, kube-proxy's rules, the bridge
    print("demo stack stopped (state kept in .local/; remove it for a clean start)")


def look_around(stack: Stack) -> str:
    return f"""
Look around (the stack keeps running):
  export KUBECONFIG={stack.cluster.kubeconfig}
  kubectl get md -A ; kubectl describe md {MD} -n {NAMESPACE}
  kubectl get deployments,pods -n {NAMESPACE} -o wide --show-labels
  kubectl get md {MD} -n {NAMESPACE} -o jsonpath='{{.status.lastAnalysis}}'
  kubectl -n mlrollout-system get pods ; kubectl -n mlrollout-system logs deploy/mlrollout-operator
  PATH=$PWD/.venv/bin:$PATH kubectl mlrollout history {MD} -n {NAMESPACE}
  MLflow UI and registry:  {stack.mlflow.tracking_uri}   (model "{MODEL}")
                           pods use {stack.mlflow.in_cluster_uri}
  Prometheus:              {stack.prometheus.url}   (pods use {stack.prometheus.in_cluster_url})
                           e.g. sum by (track) (rate(mlrollout_requests_total[1m]))
  logs: {LOGS}/ (MLflow, Prometheus, model registration), control plane and node {stack.cluster.logs}/

Stop everything:  python hack/demo.py down
"""


# --------------------------------------------------------------------------- reading the cluster
class View:
    """What the walkthrough reads: the ModelDeployment's status and Events, its Ready pods."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def kubectl(self, *args: str, **kw: Any) -> str:
        return self.cluster.kubectl("-n", NAMESPACE, *args, **kw).stdout

    def status(self) -> dict[str, Any]:
        return dict(kubectl_json(self.cluster, "-n", NAMESPACE, "get", "md", MD).get("status") or {})

    def ready_pods(self) -> dict[str, int]:
        items = kubectl_json(
            self.cluster, "-n", NAMESPACE, "get", "pods", "-l", f"mlrollout.io/model-deployment={MD}"
        )["items"]
        ready: Counter[str] = Counter()
        for pod in items:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
                ready[pod["metadata"]["labels"].get("mlrollout.io/version", "?")] += 1
        return dict(ready)

    def events(self, last: int) -> str:
        out = self.kubectl(
            "get", "events", "--field-selector", f"involvedObject.name={MD}", "--sort-by=.lastTimestamp",
            "-o", "custom-columns=REASON:.reason,MESSAGE:.message", check=False,
        )  # fmt: skip
        lines = out.rstrip().splitlines()
        return "\n".join(lines[:1] + lines[1:][-last:])

    def watch(
        self, what: str, probe: Callable[[dict[str, Any]], Any], every: Callable[[], None] | None = None
    ) -> Any:
        """Show `kubectl get md` whenever phase, weight or versions change, until probe(status) holds."""
        deadline = time.monotonic() + STAGE_TIMEOUT
        seen: tuple[Any, ...] = ()
        while time.monotonic() < deadline:
            status = self.status()
            key = tuple(
                str(status.get(k)) for k in ("phase", "weight", "canary", "stable", "currentStepIndex")
            )
            if key != seen:
                seen = key
                print(f"\n$ kubectl get md {MD} -n {NAMESPACE}   # {status.get('message', '')}")
                print(self.kubectl("get", "md", MD).rstrip(), flush=True)
            found = probe(status)
            if found:
                return found
            if every is not None:
                every()
            time.sleep(0.5)
        raise SystemExit(
            f"demo: {what} did not happen within {STAGE_TIMEOUT:.0f}s; "
            f"operator logs: kubectl -n mlrollout-system logs deploy/mlrollout-operator"
        )


def stable_is(version: str) -> Callable[[dict[str, Any]], Any]:
    return lambda s: (s.get("stable") or {}).get("version") == version and not s.get("canary") and s


def canary_version(status: dict[str, Any]) -> str | None:
    return (status.get("canary") or {}).get("version")


# --------------------------------------------------------------------------- what was measured
def by_version(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Version order (numeric) for reading."""
    return sorted(counts.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)


def pods_line(ready: dict[str, int]) -> str:
    return " / ".join(f"v{v} {n}" for v, n in by_version(ready)) or "none"


def traffic(result: LoadResult) -> str:
    shares = ", ".join(f"v{v}: {n / max(result.ok, 1):.0%}" for v, n in by_version(result.by_version))
    rate = result.summary["requests"] / max(float(result.summary["seconds"]), 0.1)
    line = f"{shares or 'no answers'} of {result.ok:,} answers ({rate:.0f} requests/s)"
    if result.failed:
        statuses = ", ".join(f"{n:,} x {s}" for s, n in sorted(result.by_status.items()) if s != "200")
        line += f"; {result.failed:,} failed ({statuses})"
    return line


def analysis_table(status: dict[str, Any], version: str) -> str:
    record = status.get("lastAnalysis") or {}
    if record.get("canaryVersion") != version:
        return "(no analysis recorded for this canary)"
    lines = [
        f"last analysis: verdict {record.get('verdict')}, action {record.get('action')}, "
        f"consecutive failures {record.get('consecutiveFailures', 0)}: {record.get('message', '')}",
        f"{'metric':<14}{'value':>10}{'threshold':>11}{'samples':>9}  verdict",
    ]
    for name, m in sorted((record.get("metrics") or {}).items()):
        if not m:
            continue
        value = "n/a" if m.get("value") is None else f"{m['value']:.3f}"
        threshold = "n/a" if m.get("threshold") is None else f"{m['threshold']:.3f}"
        lines.append(f"{name:<14}{value:>10}{threshold:>11}{m.get('samples', 0):>9}  {m.get('verdict')}")
    return "\n".join(lines)


def labelled_rows(count: int = 200) -> list[dict[str, Any]]:
    """Rows of both classes with their true labels: the load scores them and posts the labels back."""
    from support.mlflow_models import load_dataset

    x, y, _ = load_dataset("breast_cancer")
    picked = x.sample(n=count, random_state=0)
    return [
        {"features": {k: float(v) for k, v in features.items()}, "label": int(y.loc[index])}
        for index, features in picked.iterrows()
    ]


# --------------------------------------------------------------------------- walkthrough
class Walkthrough:
    def __init__(self, stack: Stack) -> None:
        self.stack, self.cluster = stack, stack.cluster
        self.view = View(stack.cluster)
        self.rows = labelled_rows()
        self.results: list[LoadResult] = []
        self.body: dict[str, Any] = {}
        self.text = ""

    def load(self) -> LoadJob:
        """About 40 requests/s (4 users, 0.1 s apart), a new connection each (kube-proxy picks a pod
        per request), every answer's label posted back through the same Service."""
        job = LoadJob(
            self.cluster, NAMESPACE, self.stack.images["mlrollout-loadgen"], f"http://{MD}.{NAMESPACE}:8080",
            self.rows, users=4, seconds=LOAD_SECONDS, feedback=1.0, wait_seconds=0.1,
        )  # fmt: skip
        job.wait_running()
        return job

    def finish(self, job: LoadJob) -> LoadResult:
        job.stop()
        result = job.result(timeout=120)
        self.results.append(result)
        return result

    def apply(self, version: str) -> None:
        import yaml

        self.text = MANIFEST.format(
            md=MD, model=MODEL, version=version, image=self.stack.images["mlrollout-serving"],
            mlflow=self.stack.mlflow.in_cluster_uri, prometheus=self.stack.prometheus.in_cluster_url,
        )  # fmt: skip
        self.body = yaml.safe_load(self.text)
        self.cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=json.dumps(self.body))

    def register(self) -> tuple[Any, Any, Any, Any]:
        from support.code_models import register_code_model
        from support.mlflow_models import train_and_register

        uri = self.stack.mlflow.tracking_uri
        LOGS.mkdir(parents=True, exist_ok=True)
        with (
            (LOGS / "register.log").open("a") as quiet,
            contextlib.redirect_stdout(quiet),
            contextlib.redirect_stderr(quiet),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            logging.getLogger("mlflow").setLevel(logging.WARNING)
            good = train_and_register(uri, MODEL, kind="logreg", seed=0)
            poor = train_and_register(uri, MODEL, quality="poor", seed=3)
            better = train_and_register(uri, MODEL, kind="logreg", seed=1)
            broken = register_code_model(uri, MODEL, fails=True)
        return good, poor, better, broken

    def run(self) -> None:
        say(f"Namespace {NAMESPACE}: its pods are placed on the real node by admission")
        self.cluster.kubectl(
            "delete",
            "namespace",
            NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=180s",
            timeout=200,
        )
        self.cluster.kubectl(
            "apply", "-f", "-", input=real_stack.real_namespace_manifest(NAMESPACE, {"app": "mlrollout-demo"})
        )

        say("Registering four versions of one model in MLflow (scikit-learn, breast cancer data)")
        good, poor, better, broken = self.register()
        explain(f"""
            v{good.version}: logistic regression, offline F1 {good.f1:.3f} (logged on its run)
            v{poor.version}: trained on shuffled labels, offline F1 {poor.f1:.3f}
            v{better.version}: logistic regression on another split, offline F1 {better.f1:.3f}
            v{broken.version}: a models-from-code pyfunc claiming F1 {broken.f1:.2f}; its predict() raises
        """)

        say(f"kubectl apply: ModelDeployment {MD} for v{good.version}")
        self.apply(good.version)
        print(self.text[self.text.index("  rollout:") :].rstrip())
        self.view.watch("the first version stable", stable_is(good.version))
        status = self.view.watch(
            "its pods Ready",
            lambda s: s.get("phase") == "Promoted" and self.view.ready_pods() == {good.version: 2} and s,
        )
        explain(f"""
            {status.get("message", "")}
            Ready pods on the real node: {pods_line(self.view.ready_pods())}
        """)
        before = self.load()
        explain(f"Load: locust in Job pod {before.pod()} calling http://{MD}.{NAMESPACE}:8080, feedback on.")

        self.gate(poor)
        during = self.canary(better, before)
        self.rollback(broken, better, during)
        self.totals()

    def gate(self, poor: Any) -> None:
        say(f"Gate: asking for v{poor.version}")
        self.apply(poor.version)
        status = self.view.watch("the gate decision", lambda s: s.get("phase") == "Rejected" and s)
        gate: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "GatePassed"), {}
        )
        explain(f"""
            phase {status.get("phase")}, GatePassed={gate.get("status")} ({gate.get("reason")}):
            {gate.get("message") or status.get("message")}
            serving: stable v{(status.get("stable") or {}).get("version")}, canary {canary_version(status)};
            ready pods {pods_line(self.view.ready_pods())}
        """)

    def canary(self, better: Any, before: LoadJob) -> LoadJob:
        before_version = (self.view.status().get("stable") or {}).get("version")
        say(f"Canary: asking for v{better.version}")
        self.apply(better.version)
        self.view.watch(
            "the canary at 50% with a Ready pod",
            lambda s: (
                s.get("weight") == 50
                and canary_version(s) == better.version
                and self.view.ready_pods().get(better.version, 0) > 0
            ),
        )
        during = self.load()  # measures the 50% step alone
        result = self.finish(before)
        explain(f"Measured from v{before_version} stable to the canary's first Ready pod: {traffic(result)}")

        samples: list[dict[str, int]] = []
        status = self.view.watch(
            "the canary leaving the 50% step",
            lambda s: s.get("weight") != 50 and s,
            every=lambda: samples.append(self.view.ready_pods()),
        )
        after = self.load()  # started before the step's load stops, so analysis never lacks traffic
        result = self.finish(during)
        seen = sorted({pods_line(r) for r in samples})
        explain(f"""
            Measured during the 50% step through the one Service: {traffic(result)};
            ready pods during the step: {"; ".join(seen) or "not sampled"}
        """)
        explain(analysis_table(status, better.version))
        status = self.view.watch("the canary promoted", stable_is(better.version))
        explain(f"""
            phase {status.get("phase")}: {status.get("message", "")}
            Events of {MD}:
        """)
        print(self.view.events(6))
        return after

    def rollback(self, broken: Any, better: Any, load: LoadJob) -> None:
        say(f"Rollback: asking for v{broken.version}")
        self.apply(broken.version)
        status = self.view.watch("a rollback", lambda s: s.get("phase") == "RolledBack" and s)
        explain(analysis_table(status, broken.version))
        explain(f"phase {status.get('phase')}: {status.get('message', '')}")
        self.view.watch(
            "the stable side back on both replicas", lambda s: self.view.ready_pods() == {better.version: 2}
        )
        time.sleep(3)  # a few answers after the rollback, all from the stable side
        result = self.finish(load)
        explain(f"""
            Measured from the promotion to after the rollback: {traffic(result)}
            failures by reason: {json.dumps(result.summary.get("failures", {}))}
            ready pods now: {pods_line(self.view.ready_pods())}
            Events of {MD}:
        """)
        print(self.view.events(8))

    def totals(self) -> None:
        versions: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        feedback: Counter[str] = Counter()
        for r in self.results:
            versions.update(r.by_version)
            statuses.update(r.by_status)
            feedback.update({str(k): int(v) for k, v in r.summary.get("feedback", {}).items()})
        say("Traffic over the whole walkthrough, as the load generator counted it")
        explain(f"""
            answers per version: {", ".join(f"v{v} {n:,}" for v, n in by_version(versions))}
            requests by HTTP status: {", ".join(f"{s}: {n:,}" for s, n in sorted(statuses.items()))}
            feedback posts by HTTP status: {", ".join(f"{s}: {n:,}" for s, n in sorted(feedback.items()))}
        """)


def main(argv: list[str]) -> None:
    if argv == ["down"]:
        down()
        return
    if argv not in ([], ["up"]):
        raise SystemExit(__doc__)
    t0 = time.monotonic()
    say("Bringing up the local stack with a real kubelet node")
    stack = stack_up()
    say(
        f"Stack up in {time.monotonic() - t0:.0f}s: control plane + real node, MLflow "
        f"{stack.mlflow.tracking_uri}, Prometheus {stack.prometheus.url}, operator pods "
        f"{', '.join(p['metadata']['name'] for p in stack.operator.pods(stack.cluster))}"
    )
    if not argv:
        try:
            Walkthrough(stack).run()
        except (StackError, ClusterError) as exc:
            raise SystemExit(f"demo: {exc}\n(the stack keeps running: python hack/demo.py down)") from exc
    print(look_around(stack))
    print(f"(total {time.monotonic() - t0:.0f}s)")


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python3
"""`make demo`: the local stack, then a guided rollout: gate rejection, canary promotion, automatic rollback.

python hack/demo.py          # bring the stack up (idempotent) and walk through a rollout (unattended)
python hack/demo.py up       # only bring the stack up
python hack/demo.py down     # stop everything the demo started

Stack: local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes), MLflow
registry, Prometheus (Debian package), the mlrollout operator. kwok pods run no containers, so during
the walkthrough a pod runner (tests/e2e/harness.py) runs one real gunicorn `mlrollout-serve` per
serving Deployment on loopback, Prometheus scrapes them, and a bounded load generator sends traffic
split by the canary weight the operator set, with ground-truth feedback for live F1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
STATE = ROOT / ".local"
sys.path.insert(0, str(HACK))

import launch  # noqa: E402
from local_cluster import ClusterError, LocalCluster, free_port  # noqa: E402

MLFLOW_DIR = STATE / "mlflow"
MLFLOW_PID = MLFLOW_DIR / "server.pid"
MLFLOW_PORT_FILE = MLFLOW_DIR / "port"
PROM_DIR = STATE / "prometheus"
OPERATOR_DIR = STATE / "operator"
DEMO_DIR = STATE / "demo"
NAMESPACE = "mlrollout-demo"
MD = "churn"
MODEL = "demo-churn"
WALK_TIMEOUT = 150.0  # seconds for any one stage of the walkthrough


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def _stop(pid_file: Path) -> None:
    pid = _alive(pid_file)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid_file) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid_file):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def _detach(argv: Sequence[str], log: Path, pid_file: Path, env: dict[str, str] | None = None) -> int:
    """Start a process in its own session that outlives this script; its pid goes to pid_file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


# --------------------------------------------------------------------------- MLflow
def mlflow_up() -> str:
    MLFLOW_DIR.mkdir(parents=True, exist_ok=True)
    if _alive(MLFLOW_PID) and MLFLOW_PORT_FILE.exists():
        return f"http://127.0.0.1:{MLFLOW_PORT_FILE.read_text().strip()}"
    port = free_port()
    argv = launch.mlflow_server_argv(MLFLOW_DIR, port)
    _detach(argv, MLFLOW_DIR / "server.log", MLFLOW_PID)
    MLFLOW_PORT_FILE.write_text(str(port))
    uri = f"http://127.0.0.1:{port}"
    if not _wait_http(f"{uri}/health", 120):
        raise SystemExit(f"MLflow server did not start; log: {MLFLOW_DIR / 'server.log'}")
    return uri


# --------------------------------------------------------------------------- Prometheus
class DemoPrometheus:
    """Prometheus from Debian's package, 1s scrapes of file-listed targets, kept under .local/."""

    pid_file = PROM_DIR / "prometheus.pid"
    port_file = PROM_DIR / "port"
    targets_file = PROM_DIR / "targets.json"

    @property
    def alive(self) -> bool:
        return _alive(self.pid_file) is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port_file.read_text().strip()}"

    def up(self) -> str:
        PROM_DIR.mkdir(parents=True, exist_ok=True)
        if self.alive and self.port_file.exists():
            return self.url
        from prometheus_build import PrometheusBuildError, prometheus_binary

        try:
            binary = str(prometheus_binary())
        except PrometheusBuildError as exc:
            raise SystemExit(f"Prometheus 3 could not be built (hack/build-prometheus.sh): {exc}") from exc
        if not self.targets_file.exists():
            self.set_targets([])
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "mlrollout-serving",
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        (PROM_DIR / "prometheus.yml").write_text(json.dumps(config, indent=2))
        port = free_port()
        argv = [
            binary,
            f"--config.file={PROM_DIR / 'prometheus.yml'}",
            f"--storage.tsdb.path={PROM_DIR / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        _detach(argv, PROM_DIR / "prometheus.log", self.pid_file)
        self.port_file.write_text(str(port))
        if not _wait_http(f"{self.url}/-/ready", 60):
            raise SystemExit(f"Prometheus did not start; log: {PROM_DIR / 'prometheus.log'}")
        return self.url

    def set_targets(self, scrape_targets: Sequence[Any]) -> None:
        groups = [{"targets": [t.address], "labels": dict(t.labels)} for t in scrape_targets]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)


# --------------------------------------------------------------------------- operator
def operator_up(cluster: LocalCluster, tracking_uri: str) -> Path:
    pid_file = OPERATOR_DIR / "operator.pid"
    log = OPERATOR_DIR / "operator.log"
    OPERATOR_DIR.mkdir(parents=True, exist_ok=True)
    crd = ROOT / "crds" / "modeldeployment.yaml"
    cluster.kubectl("apply", "-f", str(crd))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.mlrollout.io"
    )
    if _alive(pid_file):
        return log
    port = free_port()
    env = {**cluster.env(), "MLROLLOUT_TRACKING_URI": tracking_uri, "PYTHONUNBUFFERED": "1"}
    _detach(launch.operator_argv(port), log, pid_file, env)
    if not _wait_http(launch.liveness_url(port), 60):
        raise SystemExit(f"the operator did not start; log: {log}")
    return log


# --------------------------------------------------------------------------- up / down
def stack_up() -> tuple[LocalCluster, str, DemoPrometheus, Path]:
    cluster = LocalCluster(state=STATE / "cluster")
    try:
        cluster.up()
    except ClusterError as exc:
        raise SystemExit(f"local control plane failed: {exc}") from exc
    uri = mlflow_up()
    prom = DemoPrometheus()
    prom.up()
    operator_log = operator_up(cluster, uri)
    return cluster, uri, prom, operator_log


def down() -> None:
    _stop(OPERATOR_DIR / "operator.pid")
    _stop(DemoPrometheus.pid_file)
    _stop(MLFLOW_PID)
    LocalCluster(state=STATE / "cluster").down()
    print("demo stack stopped (state kept in .local/; remove it for a clean start)")


def look_around(cluster: LocalCluster, uri: str, prom: DemoPrometheus, operator_log: Path) -> str:
    return f"""
Look around (the stack keeps running):
  export KUBECONFIG={cluster.kubeconfig}
  kubectl get md -A ; kubectl describe md {MD} -n {NAMESPACE}
  kubectl get deployments,pods -n {NAMESPACE} --show-labels
  kubectl get md {MD} -n {NAMESPACE} -o jsonpath='{{.status.lastAnalysis}}'
  PATH=$PWD/.venv/bin:$PATH kubectl mlrollout history {MD} -n {NAMESPACE}
  MLflow UI and registry:  {uri}   (model "{MODEL}", its versions carry rollout tags)
  Prometheus:              {prom.url}   (e.g. sum by (track) (rate(mlrollout_requests_total[1m])))
  logs: operator {operator_log}, Prometheus {PROM_DIR / "prometheus.log"},
        serving processes {DEMO_DIR}/, control plane {cluster.logs}/

Stop everything:  python hack/demo.py down
"""


# --------------------------------------------------------------------------- walkthrough
def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def explain(text: str) -> None:
    for line in text.strip().splitlines():
        print(f"    {line.strip()}", flush=True)


class _Logs:
    def path(self, name: str) -> Path:
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        return DEMO_DIR / f"{name}.log"


def walkthrough(cluster: LocalCluster, uri: str, prom: DemoPrometheus) -> None:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]
    from faulty_model import register_broken, serving_env
    from harness import Kube, TargetBoard, dataset_rows
    from scenario import Scenario, manifest, stable_is
    from support.mlflow_models import train_and_register

    kube = Kube(cluster.env())
    kube.run("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=60s")
    kube.run("create", "namespace", NAMESPACE)

    say("Training and registering four versions of one model in MLflow (scikit-learn, breast cancer data)")
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    register_log = DEMO_DIR / "register.log"
    with (
        register_log.open("a") as quiet,
        contextlib.redirect_stdout(quiet),
        contextlib.redirect_stderr(quiet),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        good = train_and_register(uri, MODEL, kind="logreg", seed=0)
        poor = train_and_register(uri, MODEL, quality="poor", seed=3)
        better = train_and_register(uri, MODEL, kind="logreg", seed=1)
        broken = register_broken(uri, MODEL)
    explain(f"""
        v{good.version}: logistic regression, offline F1 {good.f1:.3f}
        v{poor.version}: trained on shuffled labels, offline F1 {poor.f1:.3f}
        v{better.version}: logistic regression (another split), offline F1 {better.f1:.3f}
        v{broken}: scores well offline (F1 0.95 logged) but its predict() crashes: every call is a 500
    """)

    rows, labels = dataset_rows("breast_cancer", 200)
    sc = Scenario(kube, NAMESPACE, MD, TargetBoard(prom), _Logs())
    body = manifest(
        MD,
        MODEL,
        good.version,
        prom.url,
        gate_threshold=0.8,
        interval="5s",
        window="15s",
        min_samples=20,
        failure_limit=2,
        env=serving_env(),
    )
    with sc:
        say(f"kubectl apply: ModelDeployment {MD} for v{good.version} (gate: f1_score >= 0.8)")
        print(json.dumps(body["spec"]["rollout"], indent=2))
        sc.apply(body)
        watch(sc, "first version stable", stable_is(good.version))
        explain("""
            The version passed its gate and, being the first, went straight to stable: no canary needed.
            A pod runner now runs a real gunicorn server per serving Deployment; Prometheus scrapes them.
        """)
        sc.runner.wait_ready(["stable"], timeout=60)
        sc.start_load(rows, labels, rate=20)
        explain("Load: 20 one-row requests/s split by the canary weight, each followed by its true label.")

        say(f"Gate rejection: asking for v{poor.version} (offline F1 {poor.f1:.3f})")
        sc.set_version(poor.version)
        status = watch(sc, "gate decision", lambda s: s if s.get("phase") == "Rejected" else None)
        gate: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "GatePassed"), {}
        )
        explain(f"""
            Rejected before anything touched serving: {gate.get("message", status.get("message"))}
            v{good.version} keeps serving all traffic.
        """)

        say(f"Canary promotion: asking for v{better.version} (offline F1 {better.f1:.3f})")
        sc.set_version(better.version)
        watch(sc, "canary promoted", stable_is(better.version))
        status = sc.status()
        explain(f"""
            The first analysis can find no canary data yet (its server was just starting): Inconclusive,
            and the rollout holds rather than pass on no data.
            Canary at 50% of replicas, then live analysis on Prometheus every 5s, canary against stable:
            {analysis_table(status, better.version)}
            Every metric passed with enough samples: on to 100%, and v{better.version} was promoted.
        """)

        say(f"Automatic rollback: asking for v{broken}, which fails only when it serves")
        sc.set_version(broken)
        status = watch(sc, "rollback", lambda s: s if s.get("phase") == "RolledBack" else None)
        explain(f"""
            {analysis_table(status, broken)}
            Its error rate broke the limit on two analyses in a row (failureLimit 2): the operator set
            the canary weight to 0 and removed it; v{better.version} stays stable. Decisions are Events too:
        """)
        for event in sc.events()[-8:]:
            print(f"      {event}")
        if sc.load is not None:
            stats = sc.load.stats
            explain(f"""
                Traffic over the whole walkthrough: stable {stats.total("stable")} requests,
                canary {stats.total("canary")} (of which {stats.errors("canary")} answered 5xx);
                feedback labels {dict(stats.feedback)}.
            """)
    say("Walkthrough done; the serving processes stood in for pods only while it ran and are stopped.")


def analysis_table(status: dict[str, Any], version: str) -> str:
    record = status.get("lastAnalysis") or {}
    if record.get("canaryVersion") != version:
        return "(no analysis recorded for this canary)"
    lines = [f"verdict {record.get('verdict')}, action {record.get('action')}: {record.get('message', '')}"]
    lines.append(f"{'metric':<14}{'value':>10}{'threshold':>11}{'samples':>9}  verdict")
    for name, m in sorted((record.get("metrics") or {}).items()):
        if not m:
            continue
        value = "n/a" if m.get("value") is None else f"{m['value']:.3f}"
        lines.append(
            f"{name:<14}{value:>10}{m.get('threshold', 0):>11.3f}{m.get('samples', 0):>9}  {m.get('verdict')}"
        )
    return "\n            ".join(lines)


def watch(sc: Any, what: str, probe: Callable[[dict[str, Any]], Any], timeout: float = WALK_TIMEOUT) -> Any:
    """Print `kubectl get md` whenever phase, weight or versions change, until probe(status) holds."""
    deadline = time.monotonic() + timeout
    seen: tuple[Any, ...] = ()
    while time.monotonic() < deadline:
        status = sc.status()
        key = (
            status.get("phase"),
            status.get("weight"),
            str(status.get("canary")),
            str(status.get("stable")),
        )
        if key != seen:
            seen = key
            print(f"\n$ kubectl get md {MD} -n {NAMESPACE}   # {status.get('message', '')}")
            print(sc.get_md().rstrip())
        found = probe(status)
        if found:
            return found
        time.sleep(0.5)
    raise SystemExit(
        f"demo: {what} did not happen within {timeout:.0f}s; see the operator log in {OPERATOR_DIR}"
    )


def main(argv: list[str]) -> None:
    if argv == ["down"]:
        down()
        return
    if argv not in ([], ["up"]):
        raise SystemExit(__doc__)
    t0 = time.monotonic()
    cluster, uri, prom, operator_log = stack_up()
    say(
        f"Local stack up in {time.monotonic() - t0:.0f}s: control plane, MLflow {uri}, "
        f"Prometheus {prom.url}, operator"
    )
    if not argv:
        walkthrough(cluster, uri, prom)
    print(look_around(cluster, uri, prom, operator_log))
    print(f"(total {time.monotonic() - t0:.0f}s)")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Serving benchmark: `mlflow models serve`, a minimal Flask+gunicorn endpoint and mlrollout's server,
on the same registered model, under the same load (Debian's `hey`), one server at a time.

Run from the repository root:  .venv/bin/python benchmarks/serving/run.py
Writes benchmarks/serving/RESULTS.md. Bounded: each load run lasts --seconds (default 8)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
BIN = Path(sys.executable).parent
API_KEY = "bench-key"
SCENARIOS = [(1, 1), (1, 16), (100, 1), (100, 16)]  # (rows per request, concurrent clients)
CEILING = "ceiling: no model, mlrollout's gunicorn settings"
MINIMAL_NUMPY = "minimal Flask + numpy, mlrollout's gunicorn settings"
# DESIGN.md's anchor: the numpy endpoint as people run it (gunicorn's defaults, sync workers).
MINIMAL_NUMPY_PLAIN = "minimal Flask + numpy, gunicorn -w 2"


@dataclass
class Result:
    server: str
    rows: int
    clients: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} not ready within {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)


def hey(url: str, body: Path, clients: int, seconds: float, *extra: str) -> tuple[float, float, float, int]:
    """req/s, p50 ms, p99 ms and non-2xx count, computed from hey's per-request CSV (`extra`: more
    hey flags, e.g. `-q 50` for a fixed rate per client)."""
    out = run_hey(url, body, clients, seconds, *extra, "-o", "csv")
    rows = [line.split(",") for line in out.splitlines()[1:] if line.strip()]
    if not rows:
        raise RuntimeError(f"hey recorded no requests against {url}")
    latencies = sorted(float(r[0]) * 1000 for r in rows)
    finished = max(float(r[7]) + float(r[0]) for r in rows)
    non_2xx = sum(1 for r in rows if not r[6].startswith("2"))

    def percentile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return len(rows) / finished, percentile(0.50), percentile(0.99), non_2xx


def run_hey(url: str, body: Path, clients: int, seconds: float, *extra: str) -> str:
    return subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(clients),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-H",
            f"Authorization: Bearer {API_KEY}",
            "-D",
            str(body),
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout


def predict(url: str, body: Path) -> Any:
    request = urllib.request.Request(
        url,
        data=body.read_bytes(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())["predictions"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per scenario (median kept)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "RESULTS.md")
    args = parser.parse_args()
    if not shutil.which("hey"):
        print("install the load tool first: apt-get install hey", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="mlrollout-bench-"))
    load_before = os.getloadavg()
    registry, tracking_uri = start_registry(work)
    try:
        return measure(args, work, register(tracking_uri), load_before)
    finally:
        stop(registry)
        shutil.rmtree(work, ignore_errors=True)


def measure(
    args: argparse.Namespace, work: Path, model: dict[str, Any], load_before: tuple[float, ...]
) -> int:
    bodies = write_bodies(work, model)
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",  # mlflow models serve execs `uvicorn` from PATH
        "MLFLOW_TRACKING_URI": model["tracking_uri"],
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",  # mlflow's own loader refuses skops files without it
    }
    servers = server_commands(model, work)
    results: list[Result] = []
    ready: dict[str, float] = {}
    urls: dict[str, str] = {}
    procs: list[subprocess.Popen[bytes]] = []
    expected = None
    try:
        # Start each server while the others are idle, so start-to-ready is measured alone.
        for name, (template, ready_path, extra_env, _) in servers.items():
            port = free_port()
            argv = [a.replace("{port}", str(port)) for a in template]
            with (work / f"{len(procs)}.log").open("ab") as log:
                proc = subprocess.Popen(
                    argv,
                    env={**env, **extra_env, "MLROLLOUT_BIND": f"127.0.0.1:{port}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=str(Path(__file__).parent),
                )
            procs.append(proc)
            ready[name] = wait_ready(f"http://127.0.0.1:{port}{ready_path}", proc)
            urls[name] = f"http://127.0.0.1:{port}/invocations"
            if name == CEILING:
                continue  # no model: a fixed answer
            answers = [predict(urls[name], bodies[rows]) for rows in (1, 100)]
            expected = expected or answers
            if answers != expected:
                raise RuntimeError(f"{name} answered differently from the first server")
        # Rounds interleave the servers, so a burst of background load hits all of them alike;
        # each cell reports its median round.
        for rows, clients in SCENARIOS:
            runs: dict[str, list[Result]] = {}
            for round_no in range(args.rounds):
                for name, (_, _, _, scenarios) in servers.items():
                    if (rows, clients) not in scenarios:
                        continue
                    if round_no == 0:
                        run_hey(urls[name], bodies[rows], clients, 1.0)  # warm-up
                    rps, p50, p99, bad = hey(urls[name], bodies[rows], clients, args.seconds)
                    runs.setdefault(name, []).append(Result(name, rows, clients, rps, p50, p99, bad))
            for name, cell in runs.items():
                median = sorted(cell, key=lambda r: r.rps)[len(cell) // 2]
                median.non_2xx = sum(r.non_2xx for r in cell)
                results.append(median)
                print(
                    f"{name:36s} rows={rows:3d} clients={clients:2d} {median.rps:8.1f} req/s "
                    f"p50 {median.p50_ms:6.1f} ms p99 {median.p99_ms:6.1f} ms "
                    f"(rounds: {', '.join(f'{r.rps:.0f}' for r in cell)})",
                    flush=True,
                )
    finally:
        for proc in procs:
            stop(proc)
    load_after = os.getloadavg()
    args.out.write_text(report(args.rounds, results, ready, load_before, load_after, args.seconds, model))
    print(f"wrote {args.out}")
    return 0


def start_registry(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real MLflow tracking server and registry (sqlite store, local artifact root)."""
    port = free_port()
    artifacts = work / "artifacts"
    artifacts.mkdir()
    log = (work / "mlflow-server.log").open("ab")
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--default-artifact-root",
            artifacts.as_uri(),
            "--no-serve-artifacts",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    wait_ready(f"{uri}/health", proc)
    return proc, uri


def register(tracking_uri: str) -> dict[str, Any]:
    from support.mlflow_models import train_and_register

    info = train_and_register(tracking_uri, "bench-breast-cancer", dataset="breast_cancer")
    source = info.source.removeprefix("file://")
    return {
        "tracking_uri": tracking_uri,
        "model_uri": info.model_uri,
        "source": source,
        "names": info.feature_names,
        "rows": info.sample_rows,
    }


def write_bodies(work: Path, model: dict[str, Any]) -> dict[int, Path]:
    from support.mlflow_models import load_dataset

    frame, _, names = load_dataset("breast_cancer")
    bodies = {}
    for rows in (1, 100):
        path = work / f"body-{rows}.json"
        path.write_text(
            json.dumps({"dataframe_split": {"columns": names, "data": frame.head(rows).to_numpy().tolist()}})
        )
        bodies[rows] = path
    return bodies


def plain_gunicorn(app: str) -> list[str]:
    """A minimal app as people run it: gunicorn's defaults (sync workers), 2 of them."""
    return [str(BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:{port}", "--no-control-socket", app]


def server_commands(
    model: dict[str, Any], work: Path
) -> dict[str, tuple[list[str], str, dict[str, str], list]]:
    keys = work / "keys"
    keys.write_text(API_KEY + "\n")
    mlrollout_env = {
        "MLROLLOUT_MODEL_URI": model["model_uri"],
        "MLROLLOUT_WORKERS": "2",
        "MLROLLOUT_API_KEYS_FILE": str(keys),
        "MLROLLOUT_TRACK": "stable",
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
        "MLROLLOUT_LOG_REQUESTS": "true",
    }
    return {
        CEILING: (
            [sys.executable, "-P", str(Path(__file__).parent / "ceiling_app.py")],
            "/ping",
            {"MLROLLOUT_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus-ceiling")},
            [(1, 1), (1, 16)],
        ),
        "mlflow models serve (2 workers)": (
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                model["model_uri"],
                "-h",
                "127.0.0.1",
                "-p",
                "{port}",
                "-w",
                "2",
                "--env-manager",
                "local",
            ],
            "/ping",
            {},
            SCENARIOS,
        ),
        "minimal Flask+gunicorn (2 workers)": (
            plain_gunicorn("minimal_app:app"),
            "/ping",
            {"MODEL_DIR": model["source"]},
            SCENARIOS,
        ),
        MINIMAL_NUMPY_PLAIN: (
            plain_gunicorn("minimal_numpy_app:app"),
            "/ping",
            {"MODEL_DIR": model["source"]},
            [(1, 1), (1, 16)],
        ),
        MINIMAL_NUMPY: (
            [sys.executable, "-P", str(Path(__file__).parent / "minimal_numpy_app.py")],
            "/ping",
            {
                "MODEL_DIR": model["source"],
                "MLROLLOUT_WORKERS": "2",
                "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus-numpy"),
            },
            SCENARIOS,
        ),
        "mlrollout (2 workers, all features)": (
            [str(BIN / "mlrollout-serve")],
            "/readyz",
            mlrollout_env,
            SCENARIOS,
        ),
        "mlrollout, micro-batching forced on": (
            [str(BIN / "mlrollout-serve")],
            "/readyz",
            {**mlrollout_env, "MLROLLOUT_MICROBATCH": "true"},
            [(1, 16)],
        ),
        "mlrollout, fast path off": (
            [str(BIN / "mlrollout-serve")],
            "/readyz",
            {**mlrollout_env, "MLROLLOUT_FASTPATH": "false"},
            [(1, 16)],
        ),
        "mlrollout, access log off": (
            [str(BIN / "mlrollout-serve")],
            "/readyz",
            {**mlrollout_env, "MLROLLOUT_LOG_REQUESTS": "false"},
            [(1, 16)],
        ),
        "mlrollout, API-key auth off": (
            [str(BIN / "mlrollout-serve")],
            "/readyz",
            {k: v for k, v in mlrollout_env.items() if k != "MLROLLOUT_API_KEYS_FILE"},
            [(1, 16)],
        ),
    }


def report(
    rounds: int,
    results: list[Result],
    ready: dict[str, float],
    before: tuple[float, ...],
    after: tuple[float, ...],
    seconds: float,
    model: dict[str, Any],
) -> str:
    by = {(r.server, r.rows, r.clients): r for r in results}
    mlflow, minimal, ours = (
        "mlflow models serve (2 workers)",
        "minimal Flask+gunicorn (2 workers)",
        "mlrollout (2 workers, all features)",
    )
    lines = [
        "# Serving benchmark results",
        "",
        "Command (from the repository root): `.venv/bin/python benchmarks/serving/run.py`",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}. "
        f"Load average before/after: {before[0]:.1f} / {after[0]:.1f} "
        "(the machine is shared with other jobs; the load tool runs on the same cores).",
        f"Model: `{model['model_uri']}` (StandardScaler + LogisticRegression on breast_cancer, "
        "30 float columns), registered in a real MLflow server. Load tool: `hey`, "
        f"{rounds} interleaved rounds of {seconds:.0f} s per server and scenario (median round shown; "
        "a 1 s warm-up first), keep-alive connections, same body and headers for every server. All servers "
        "stay up and idle while another is measured; start-to-ready is measured with the others idle.",
        "",
        "mlrollout runs with everything on: signature validation, API-key auth, Prometheus multiprocess "
        "metrics, one access-log line per request, feedback store, verified fast path, micro-batching at its "
        "default (auto: off for a model on the fast path; the forced-on row shows what it would cost).",
        "",
        "| server | rows/request | clients | req/s | rows/s | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.server} | {r.rows} | {r.clients} | {r.rps:,.0f} | {r.rows_per_s:,.0f} | "
            f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.non_2xx} |"
        )
    lines += ["", "## Start to ready", "", "| server | seconds from process start to ready |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in ready.items()]
    lines += ["", "## Against the targets", ""]

    def ratio(a: tuple[str, int, int], b: tuple[str, int, int], rows: bool = False) -> float | None:
        if a not in by or b not in by:
            return None
        x, y = by[a], by[b]
        return (x.rows_per_s / y.rows_per_s) if rows else (x.rps / y.rps)

    checks = [
        ("1-row, 16 clients: throughput vs mlflow models serve", ratio((ours, 1, 16), (mlflow, 1, 16)), 25.0),
        ("1-row, 16 clients: throughput vs minimal Flask", ratio((ours, 1, 16), (minimal, 1, 16)), 1.5),
        (
            "1-row, 16 clients: throughput vs minimal Flask + numpy, gunicorn -w 2 (DESIGN.md)",
            ratio((ours, 1, 16), (MINIMAL_NUMPY_PLAIN, 1, 16)),
            2.5,
        ),
        (
            "1-row, 16 clients: throughput vs minimal Flask + numpy (same gunicorn settings)",
            ratio((ours, 1, 16), (MINIMAL_NUMPY, 1, 16)),
            1.0,
        ),
        (
            "1-row, 16 clients: throughput vs the ceiling (no model)",
            ratio((ours, 1, 16), (CEILING, 1, 16)),
            0.6,
        ),
        (
            "100-row, 16 clients: rows/s vs mlflow models serve",
            ratio((ours, 100, 16), (mlflow, 100, 16), True),
            10.0,
        ),
        (
            "100-row, 1 client: rows/s vs mlflow models serve",
            ratio((ours, 100, 1), (mlflow, 100, 1), True),
            10.0,
        ),
    ]
    lines += ["| target | measured | goal | met |", "|---|---:|---:|---|"]
    for label, value, goal in checks:
        shown = "n/a" if value is None else f"{value:.2f}x" if value < 10 else f"{value:.1f}x"
        lines.append(f"| {label} | {shown} | >= {goal}x | {'yes' if value and value >= goal else 'no'} |")
    p99 = by.get((ours, 1, 16))
    if p99:
        lines.append(
            f"| 1-row, 16 clients: p99 | {p99.p99_ms:.1f} ms | <= 20 ms | "
            f"{'yes' if p99.p99_ms <= 20 else 'no'} |"
        )
    if ours in ready:
        lines.append(
            f"| start to ready | {ready[ours]:.2f} s | <= 3 s | {'yes' if ready[ours] <= 3 else 'no'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

"""Shadow benchmark: user-facing latency of a stable `mlrollout-serve` with shadow mirroring at 100%
against the same server with shadow off, in the same run (interleaved rounds, median kept).

Two real servers (gunicorn, 2 workers each, every feature on) serve the same version registered in a
real MLflow server: the stable one, and the shadow it copies every request to. Mirroring is switched
by rewriting the stable's settings file (what the operator's pod annotation becomes), so the same
processes serve both modes. Load: Debian's `hey`, 1-row requests, keep-alive: closed loops (as fast
as answers come) and a fixed rate below capacity (what a latency target is quoted at).

By default the stable server gets CPU 0 to itself and everything else (shadow server, hey, MLflow)
shares the others, as a cluster gives the shadow pods their own CPU; `--no-pin` runs all on all cores.
On a 2-core machine "the others" is one core, where the shadow's model work for each copy starts just
as `hey` reads the user's answer: `--shadow-priority idle` (the default when pinned) runs the shadow
server under SCHED_IDLE there, so it answers every copy on CPU time the load generator does not want
(in a cluster the users' clients are not on the shadow's nodes), `normal` measures that contention too.

Run from the repository root:  .venv/bin/python benchmarks/shadow/run.py   (~3 minutes)
Writes benchmarks/shadow/RESULTS.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "serving"))
from run import BIN, free_port, hey, register, start_registry, stop, wait_ready, write_bodies  # noqa: E402

# (label, concurrent clients, requests/s per client or 0 for as fast as answers come); 1-row requests
SCENARIOS = (
    ("1 client, closed loop", 1, 0),
    ("16 clients, closed loop", 16, 0),
    ("200 req/s (4 clients x 50/s)", 4, 50),
)
SETTLE_SECONDS = 2.5  # every worker re-reads its settings file within REFRESH_SECONDS (1 s)


def start(
    model_uri: str,
    tracking_uri: str,
    work: Path,
    name: str,
    cpus: set[int] | None,
    *,
    idle: bool = False,
    **env: str,
) -> tuple[Any, str]:
    port = free_port()
    log = (work / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [
            *(["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []),
            *(["chrt", "--idle", "0"] if idle else []),
            str(BIN / "mlrollout-serve"),
        ],
        env={
            **os.environ,
            "MLROLLOUT_MODEL_URI": model_uri,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLROLLOUT_PORT": str(port),
            "MLROLLOUT_HOST": "127.0.0.1",
            "MLROLLOUT_WORKERS": "2",
            "MLROLLOUT_API_KEYS": "bench-key",
            "PROMETHEUS_MULTIPROC_DIR": str(work / f"prometheus-{name}"),
            **env,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/readyz", proc)
    return proc, url


def shadow_counts(url: str) -> dict[str, float]:
    """The stable's mlrollout_shadow_requests_total by outcome, summed over labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(r'^mlrollout_shadow_requests_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$', text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each load run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median kept)")
    parser.add_argument("--percent", type=float, default=100.0, help="shadow percent when on")
    parser.add_argument("--no-pin", action="store_true", help="no CPU pinning (all on all cores)")
    parser.add_argument(
        "--shadow-priority",
        choices=("idle", "normal"),
        help="the shadow server's CPU scheduling (default: idle when pinned, else normal)",
    )
    args = parser.parse_args()
    everything = sorted(os.sched_getaffinity(0))
    args.pinned = not args.no_pin and len(everything) >= 2
    args.shadow_priority = args.shadow_priority or ("idle" if args.pinned else "normal")
    stable_cpus = {everything[0]} if args.pinned else None
    if args.pinned:  # this process, and so hey, MLflow and the shadow server, off the stable's CPU
        os.sched_setaffinity(0, set(everything[1:]))
    with tempfile.TemporaryDirectory(prefix="mlrollout-shadow-bench-") as tmp:
        work = Path(tmp)
        registry, tracking_uri = start_registry(work)
        procs: list[Any] = [registry]
        try:
            model = register(tracking_uri)
            body = write_bodies(work, model)[1]
            settings = work / "shadow.json"
            settings.write_text("")
            shadow, shadow_url = start(
                model["model_uri"],
                tracking_uri,
                work,
                "shadow",
                None,
                idle=args.shadow_priority == "idle",
                MLROLLOUT_TRACK="canary",
                MLROLLOUT_MODEL_VERSION="shadow",
            )
            procs.append(shadow)
            stable, stable_url = start(
                model["model_uri"],
                tracking_uri,
                work,
                "stable",
                stable_cpus,
                MLROLLOUT_SHADOW_CONFIG=str(settings),
            )
            procs.append(stable)
            on = {"target": shadow_url, "version": "shadow", "percent": args.percent, "timeoutMs": 1000}
            results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
            mirrored: dict[str, float] = {}
            for r in range(args.rounds):
                for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    settings.write_text(json.dumps(on) if mode == "on" else "")
                    time.sleep(SETTLE_SECONDS)
                    for label, clients, rate in SCENARIOS:
                        limit = ("-q", str(rate)) if rate else ()
                        hey(f"{stable_url}/invocations", body, clients, 1.0, *limit)  # warm-up
                        before = shadow_counts(stable_url)
                        rps, p50, p99, bad = hey(
                            f"{stable_url}/invocations", body, clients, args.seconds, *limit
                        )
                        if bad:
                            raise RuntimeError(f"{bad} non-2xx answers with shadow {mode}")
                        time.sleep(1.5)  # copies still in flight are answered (timeout 1 s) or dropped
                        after = shadow_counts(stable_url)
                        for k, v in after.items():
                            key = f"{mode}/{label}/{k}"
                            mirrored[key] = mirrored.get(key, 0.0) + v - before.get(k, 0.0)
                        key = f"{mode}/{label}/requests"
                        mirrored[key] = mirrored.get(key, 0.0) + rps * args.seconds
                        results.setdefault((mode, label), []).append((rps, p50, p99))
                        print(
                            f"round {r + 1} shadow {mode:3} {label:30}: {rps:7.0f} req/s "
                            f"p50 {p50:6.2f} ms p99 {p99:6.2f} ms",
                            flush=True,
                        )
            report(args, results, mirrored)
        finally:
            for proc in reversed(procs):
                stop(proc)
    return 0


def report(
    args: argparse.Namespace,
    results: dict[tuple[str, str], list[tuple[float, float, float]]],
    mirrored: dict[str, float],
) -> None:
    def med(mode: str, label: str, i: int) -> float:
        return statistics.median(v[i] for v in results[(mode, label)])

    placement = (
        "the stable server pinned to CPU 0 alone; the shadow server, hey and MLflow on the other cores"
        if args.pinned
        else "no pinning: everything shares every core"
    ) + f"; the shadow server's CPU priority {args.shadow_priority}"

    lines = [
        "# Shadow benchmark results",
        "",
        "Command: `.venv/bin/python benchmarks/shadow/run.py "
        f"--seconds {args.seconds:g} --rounds {args.rounds} --percent {args.percent:g}"
        f"{' --no-pin' if args.no_pin else ''} --shadow-priority {args.shadow_priority}` "
        f"on {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; {placement}.",
        "Stable and shadow: `mlrollout-serve`, 2 workers each, every feature on, the same registered "
        "breast_cancer LogisticRegression pipeline; 1-row `dataframe_split` requests with `hey` "
        "(keep-alive). "
        "The anchor is shadow off, measured in the same interleaved rounds; medians of the rounds.",
        "",
        "| load | shadow | req/s | p50 ms | p99 ms | p50 on/off | p99 on/off |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, _, _ in SCENARIOS:
        for mode in ("off", "on"):
            ratio50 = ratio99 = ""
            if mode == "on":
                ratio50 = f"{med('on', label, 1) / med('off', label, 1):.2f}"
                ratio99 = f"{med('on', label, 2) / med('off', label, 2):.2f}"
            lines.append(
                f"| {label} | {mode} | {med(mode, label, 0):.0f} | {med(mode, label, 1):.2f} | "
                f"{med(mode, label, 2):.2f} | {ratio50} | {ratio99} |"
            )
    copied_off = sum(v for k, v in mirrored.items() if k.startswith("off/") and not k.endswith("/requests"))
    lines += [
        "",
        "What the stable pods did with the copies while shadow was on (all rounds; requests counted by "
        "`hey`, copies by the stable's `mlrollout_shadow_requests_total`; shadow off copied "
        f"{copied_off:.0f}):",
        "",
        "| load | user requests | copies answered and compared | dropped (relay behind) | shadow errors |",
        "|---|---|---|---|---|",
    ]
    for label, _, _ in SCENARIOS:
        got = {k.rsplit("/", 1)[1]: v for k, v in mirrored.items() if k.startswith(f"on/{label}/")}
        errors = sum(v for k, v in got.items() if k not in ("answered", "dropped", "requests"))
        lines.append(
            f"| {label} | {got.get('requests', 0):.0f} | {got.get('answered', 0):.0f} | "
            f"{got.get('dropped', 0):.0f} | {errors:.0f} |"
        )
    lines.append("")
    out = ROOT / "benchmarks" / "shadow" / "RESULTS.md"
    out.write_text("\n".join(lines))
    print(out.read_text())


if __name__ == "__main__":
    raise SystemExit(main())

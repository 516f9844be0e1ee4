"""bench_peers.py's JSON lines as the side-by-side Markdown table of RESULTS.md, with the ratios.

    .venv/bin/python benchmarks/operator/peers_table.py /tmp/peers.jsonl

Runs are paired by count and round: Argo Rollouts is the anchor, each ratio is mlrollout / Argo
measured in the same invocation (below 1: mlrollout is faster, or smaller).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

LATENCIES = [
    ("change_to_canary_created_s", "change -> canary workload"),
    ("change_to_half_s", "change -> 50% step"),
    ("abort_to_canary_zero_s", "abort -> canary at 0"),
    ("abort_to_stable_sized_s", "abort -> stable scaled to 2 (the controller's write)"),
    ("abort_to_stable_rs_sized_s", "abort -> stable's ReplicaSet scaled to 2 (both)"),
    ("abort_to_stable_full_s", "abort -> stable 2/2 Ready (the workload's status)"),
    ("abort_to_stable_rs_ready_s", "abort -> stable 2/2 Ready (its ReplicaSet's status, both)"),
    ("create_to_settled_s", "create -> settled"),
]


def latency_row(label: str, a: dict[str, float], m: dict[str, float]) -> str:
    """p50 / p95 / max of both, and the p95 ratio (a floor under Argo's, some stages take ~0 s)."""

    def cell(x: dict[str, float]) -> str:
        return f"{x['p50']:.2f} / {x['p95']:.2f} / {x['max']:.2f}"

    return f"| {label} | {cell(a)} | {cell(m)} | {m['p95'] / max(a['p95'], 0.001):.2f}x |"


def rows(argo: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    out = []
    for key, label in LATENCIES:
        if key not in argo or key not in ours:  # runs recorded before the figure existed
            continue
        out.append(latency_row(label, argo[key], ours[key]))
    stages = [
        ("rs_sized_to_created", "its ReplicaSet scaled -> pod created (ReplicaSet controller)"),
        ("created_to_bound", "pod created -> bound to a node (scheduler)"),
        ("bound_to_ready", "bound -> pod Ready (kwok)"),
        ("ready_to_rs_ready", "pod Ready -> ReplicaSet 2/2 Ready (ReplicaSet controller)"),
    ]
    for key, label in stages:  # the abort's new stable pods, stage by stage
        a, m = argo.get("abort_stable_pods", {}).get(key), ours.get("abort_stable_pods", {}).get(key)
        if a and m:
            out.append(latency_row(f"abort, stable's new pods: {label}", a, m))
    for phase in ("create", "change", "abort"):  # the harness's own writes (runs since 2026-12-07)
        a, m = argo.get("harness_write_s", {}).get(phase), ours.get("harness_write_s", {}).get(phase)
        if a and m:
            out.append(latency_row(f"the harness's {phase} write, round trip", a, m))
    for phase in ("create", "change_to_half", "abort"):
        a, m = argo["settle_s"][phase], ours["settle_s"][phase]
        out.append(f"| all N settled: {phase} | {a:.1f} | {m:.1f} | {m / a:.2f}x |")
    for phase in ("create", "change", "abort"):
        a, m = argo.get("wave_s", {}).get(phase), ours.get("wave_s", {}).get(phase)
        if a and m:
            label = f"the harness's {phase} wave, first to last write"
            out.append(f"| {label} | {a:.1f} | {m:.1f} | {m / a:.2f}x |")
    a, m = argo["rss_mb"]["peak"], ours["rss_mb"]["peak"]
    out.append(f"| RSS peak (MB) | {a:.0f} | {m:.0f} | {m / a:.2f}x |")
    a, m = argo["cpu_s"]["total"], ours["cpu_s"]["total"]
    out.append(f"| controller CPU seconds | {a:.1f} | {m:.1f} | {m / a:.2f}x |")
    for part in ("kube-apiserver", "etcd", "kube-controller-manager"):
        if part in argo.get("control_plane_cpu_s", {}) and part in ours.get("control_plane_cpu_s", {}):
            a, m = argo["control_plane_cpu_s"][part], ours["control_plane_cpu_s"][part]
            out.append(f"| {part} CPU seconds | {a:.1f} | {m:.1f} | {m / a:.2f}x |")
    a, m = argo["registry_cpu_s"], ours["registry_cpu_s"]
    out.append(f"| registry (mlflow server) CPU seconds | {a:.1f} | {m:.1f} | |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    runs = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    pairs: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for run in runs:
        side = "ours" if run["controller"] == "mlrollout" else "argo"
        pairs.setdefault((run["count"], run["round"]), {})[side] = run
    for (count, rnd), pair in sorted(pairs.items()):
        if set(pair) != {"argo", "ours"}:
            continue
        argo, ours = pair["argo"], pair["ours"]
        loads = f"Argo {argo['load_before']} / {argo['load_after']}, "
        loads += f"mlrollout {ours['load_before']} / {ours['load_after']}"
        service = {True: "a Service beside each Rollout", False: "no Service beside the Rollouts"}
        setup = service[bool(argo.get("service_per_object", False))]
        if argo.get("argo_pods_like_ours"):
            setup += "; the Rollouts' pods with mlrollout's pod spec"
        print(f"\nN = {count}, round {rnd} ({setup}); load average before / after: {loads}\n")
        print(f"| seconds (p50 / p95 / max) | {argo['controller']} | mlrollout | p95 ratio |")
        print("|---|---|---|---|")
        print("\n".join(rows(argo, ours)))


if __name__ == "__main__":
    main()

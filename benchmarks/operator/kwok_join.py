"""Split the abort's bound -> Ready stage between the node and the watch that reports it.

bench_peers.py writes each run's new stable pods (harness wall-clock times) to
<logs>/abort-pods-<namespace>.json; kwok logs when it patched each pod's status. Per run:
bound (harness) -> kwok's Ready patch, and kwok's patch -> Ready seen by the harness.

    .venv/bin/python benchmarks/operator/kwok_join.py /tmp/mlrollout-peers-XXXX
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from bench_operator import pct  # the percentile the peers' tables use


def kwok_patches(log: Path) -> dict[str, float]:
    """Pod (namespace/name) -> the time of kwok's last status patch of it (its Ready one)."""
    out: dict[str, float] = {}
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "Patch pod" and rec.get("subresource") == "status":
            # RFC 3339 with nanoseconds; microseconds are plenty here.
            stamp = rec["time"].rstrip("Z")
            head, _, frac = stamp.partition(".")
            out[rec["pod"]] = datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()
    return out


def main(logs: Path) -> int:
    patched = kwok_patches(logs / "cluster" / "logs" / "kwok.log")
    for dump in sorted(logs.glob("abort-pods-*.json")):
        pods = json.loads(dump.read_text())
        node, watch, missing = [], [], 0
        for p in pods:
            at = patched.get(p["pod"])
            if at is None or p["bound"] is None or p["ready"] is None:
                missing += 1
                continue
            node.append(at - p["bound"])
            watch.append(p["ready"] - at)
        print(f"{dump.name}: {len(node)} pods ({missing} without a kwok patch or a time)")
        for label, values in (("bound -> kwok patch", node), ("kwok patch -> seen Ready", watch)):
            if values:
                print(
                    f"  {label:26s} p50 {pct(values, 0.5):6.3f}  p95 {pct(values, 0.95):6.3f}"
                    f"  max {max(values):6.3f} s"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

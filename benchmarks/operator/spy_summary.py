"""Where an operator's CPU went, from a py-spy raw profile (bench_peers.py --py-spy).

    .venv/bin/python benchmarks/operator/spy_summary.py /tmp/.../py-spy-100.txt [--top 25]

Prints the share of samples spent (inclusive: anywhere on the stack) in each function, for the
functions that matter, and the share by leaf (self time) for the heaviest leaves. Idle samples
(the event loop waiting in select/epoll) are counted apart so the shares are of busy time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = re.compile(r"\b(select|poll|_run_once) \((selectors|asyncio/base_events)")
LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def function(frame: str) -> str:
    """`name (path/module.py:123)` -> `name (module.py)`: lines apart, one function."""
    m = re.match(r"^(?P<name>.*?) \((?P<path>[^:)]*)(:\d+)?\)$", frame)
    if not m:
        return frame
    return f"{m['name']} ({'/'.join(Path(m['path']).parts[-2:])})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    busy = idle = 0
    for raw in args.profile.read_text().splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        frames, count = m["stack"].split(";"), int(m["count"])
        if IDLE.search(frames[-1]):
            idle += count
            continue
        busy += count
        leaves[function(frames[-1])] += count
        for name in {function(f) for f in frames}:
            inclusive[name] += count
    print(f"samples: busy {busy}, idle {idle} ({busy / max(1, busy + idle):.0%} busy)")
    print(f"\ninclusive share of busy samples (top {args.top}):")
    for name, n in inclusive.most_common(args.top):
        print(f"  {n / max(1, busy):6.1%}  {name}")
    print(f"\nself (leaf) share of busy samples (top {args.top}):")
    for name, n in leaves.most_common(args.top):
        print(f"  {n / max(1, busy):6.1%}  {name}")


if __name__ == "__main__":
    main()

"""A stand-in for serving pods' /metrics with controlled traffic: one process, one HTTP endpoint per
target, each emitting the series of METRICS_CONTRACT.md at a chosen request rate, error fraction,
latency, feedback accuracy and class mix. Exits on its own after --max-seconds.

    python serving_exporter.py --max-seconds 300 --ports-file ports.json '[{"track": "canary",
        "version": "2", "rps": 40, "error_fraction": 0.2, "latency_ms": 20, "feedback_rps": 20,
        "correct_fraction": 0.95, "class_shares": {"0": 0.5, "1": 0.5}}]'

A profile without a port (or with port 0) gets one from the kernel at bind time: a port picked
earlier by the caller and bound here later can be taken in between (that failed a CI run). The bound
ports go to --ports-file as a JSON list in profile order, written once all of them listen.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

TICK_SECONDS = 0.2
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Profile:
    track: str
    port: int = 0
    version: str = "1"
    model_name: str = "demo"
    rps: float = 0.0
    error_fraction: float = 0.0
    client_error_fraction: float = 0.0  # answered 422 (a canary refusing its clients' requests)
    latency_ms: float = 20.0
    feedback_rps: float = 0.0
    correct_fraction: float = 1.0
    class_shares: dict[str, float] = field(default_factory=lambda: {"0": 0.5, "1": 0.5})


class Target:
    """One fake serving pod: its own registry on its own port."""

    def __init__(self, p: Profile) -> None:
        self.p = p
        registry = CollectorRegistry()
        common = ["model", "model_version", "track"]
        self.base = (p.model_name, p.version, p.track)
        self.requests = Counter(
            "mlrollout_requests", "requests", [*common, "endpoint", "status"], registry=registry
        )
        self.latency = Histogram(
            "mlrollout_request_duration_seconds",
            "latency",
            [*common, "endpoint"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "mlrollout_predictions", "predictions", [*common, "class"], registry=registry
        )
        self.feedback = Counter(
            "mlrollout_feedback", "feedback", [*common, "predicted", "actual"], registry=registry
        )
        # Series exist from the start (value 0), as a freshly started server would show them.
        self.requests.labels(*self.base, "invocations", "200")
        self.latency.labels(*self.base, "invocations")
        # Fractional carry so low rates still produce whole events at the right average.
        self.carry = {"req": 0.0, "fb": 0.0}
        self.sent = {"req": 0, "err": 0, "refused": 0, "fb": 0, "fb_ok": 0}
        self.class_counts = dict.fromkeys(p.class_shares, 0)
        server, _ = start_http_server(p.port, addr="127.0.0.1", registry=registry)
        self.port = int(server.server_port)

    def _take(self, key: str, rate: float, elapsed: float) -> int:
        self.carry[key] += rate * elapsed
        n = int(self.carry[key])
        self.carry[key] -= n
        return n

    def _next_class(self) -> str:
        # Deterministic: pick the class furthest below its share so far.
        total = sum(self.class_counts.values()) + 1
        cls = max(self.p.class_shares, key=lambda c: self.p.class_shares[c] * total - self.class_counts[c])
        self.class_counts[cls] += 1
        return cls

    def tick(self, elapsed: float) -> None:
        """Emit what `elapsed` seconds of traffic at the profile's rates would have produced."""
        p = self.p
        for _ in range(self._take("req", p.rps, elapsed)):
            self.sent["req"] += 1
            failing = self.sent["err"] < p.error_fraction * self.sent["req"]
            self.sent["err"] += failing
            refused = not failing and self.sent["refused"] < p.client_error_fraction * self.sent["req"]
            self.sent["refused"] += refused
            status = "503" if failing else ("422" if refused else "200")
            self.requests.labels(*self.base, "invocations", status).inc()
            self.latency.labels(*self.base, "invocations").observe(p.latency_ms / 1000.0)
            if not failing and not refused:
                self.predictions.labels(*self.base, self._next_class()).inc()
        classes = sorted(p.class_shares)
        for i in range(self._take("fb", p.feedback_rps, elapsed)):
            self.sent["fb"] += 1
            correct = self.sent["fb_ok"] < p.correct_fraction * self.sent["fb"]
            self.sent["fb_ok"] += correct
            actual = classes[i % len(classes)]
            predicted = actual if correct else classes[(i + 1) % len(classes)]
            self.feedback.labels(*self.base, predicted, actual).inc()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profiles", help="JSON list of target profiles")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--ports-file", type=Path, help="where to write the bound ports (JSON list)")
    args = parser.parse_args(argv)
    raw: list[dict[str, Any]] = json.loads(args.profiles)
    targets = [Target(Profile(**r)) for r in raw]
    ports = [t.port for t in targets]
    if args.ports_file:
        partial = args.ports_file.with_name(args.ports_file.name + ".partial")
        partial.write_text(json.dumps(ports))
        partial.replace(args.ports_file)  # readers never see half a list
    print(f"exporting {len(targets)} targets on ports {ports}", flush=True)
    last = time.monotonic()
    deadline = last + args.max_seconds
    while last < deadline:
        time.sleep(TICK_SECONDS)
        # Rates follow the clock, not the tick count, so a busy machine does not thin the traffic.
        now = time.monotonic()
        for t in targets:
            t.tick(now - last)
        last = now


if __name__ == "__main__":
    main()

"""What the read commands print (pure: a Snapshot and the time in, text out).

- `frame`: `status` and each redraw of `status --watch` on a terminal.
- `progress_lines`: `status --watch` when piped, one line per fact, repeated only when it changes.
- `tree`: `get` (ModelDeployment -> revisions -> pods).
- `history`: `history`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mlrollout.operator.model import Status, fmt_time
from mlrollout.operator.plugin.snapshot import Analysis, Revision, Snapshot

EVENTS_SHOWN = 6


def table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        indent + "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def age(since: datetime | None, now: datetime) -> str:
    """kubectl's AGE: 42s, 7m, 3h, 5d."""
    if since is None:
        return "-"
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _gate(r: Revision) -> str:
    return _num(r.gate, 4) if r.gate is not None else "-"


def _track(r: Revision) -> str:
    return f"kept #{r.history_revision}" if r.history_revision is not None else r.track


def pods_summary(snap: Snapshot) -> str:
    """`stable v1 2/2, canary v3 1/1` over the revisions that have or want pods."""
    parts = [
        f"{r.track} v{r.version} {r.ready}/{r.replicas}"
        for r in snap.revisions
        if r.track in ("stable", "canary") or r.replicas or r.ready
    ]
    return ", ".join(parts) or "none"


def analysis_summary(a: Analysis) -> str:
    metrics = "; ".join(
        f"{m.name} {_num(m.value)} {m.direction or '?'} {_num(m.threshold)} ({m.samples} samples) {m.verdict}"
        for m in a.metrics
    )
    head = f"{a.verdict} ({a.action}) for canary {a.canary_version}"
    return f"{head}: {metrics}" if metrics else f"{head}: {a.message}"


def _phase(snap: Snapshot) -> str:
    reason = f" [{snap.pause_reason}]" if snap.pause_reason else ""
    return f"{snap.phase}{reason}" + (f": {snap.message}" if snap.message else "")


def frame(snap: Snapshot, now: datetime) -> str:
    observed = "-" if snap.observed_generation is None else str(snap.observed_generation)
    lines = [
        f"Name:       {snap.name}",
        f"Namespace:  {snap.namespace}",
        f"Model:      {snap.model} ({snap.target}; generation {snap.generation}, observed {observed})",
        f"Phase:      {_phase(snap)}",
        f"Step:       {snap.step}",
        f"Weight:     {snap.weight}% to the canary" + ("  (spec.paused)" if snap.paused else ""),
    ]
    if snap.route:
        lines.append(f"Router:     {snap.route}")
    if snap.header_route:
        lines.append(f"Headers:    {snap.header_route}")
    rows: list[tuple[str, ...]] = [("TRACK", "VERSION", "PODS", "RESTARTS", "GATE", "DEPLOYMENT", "AGE")]
    rows += [
        (
            _track(r),
            r.version,
            f"{r.ready}/{r.replicas}",
            str(r.restarts),
            _gate(r),
            r.deployment,
            age(r.created, now),
        )
        for r in snap.revisions
    ]
    lines += ["", table(rows)]
    a = snap.analysis
    if a is not None:
        lines += [
            "",
            f"Analysis:   {a.verdict} ({a.action}) for canary {a.canary_version} at "
            f"{fmt_time(a.evaluated_at) or '-'}, consecutive failures {a.consecutive_failures}",
        ]
        if a.metrics:
            metric_rows: list[tuple[str, ...]] = [("METRIC", "VALUE", "THRESHOLD", "SAMPLES", "VERDICT")]
            metric_rows += [
                (
                    m.name,
                    _num(m.value),
                    f"{m.direction} {_num(m.threshold)}".strip(),
                    str(m.samples),
                    m.verdict,
                )
                for m in a.metrics
            ]
            lines.append(table(metric_rows, indent="  "))
        elif a.message:
            lines.append(f"  {a.message}")
    if snap.conditions:
        cond_rows: list[tuple[str, ...]] = [("CONDITION", "STATUS", "REASON", "MESSAGE")]
        cond_rows += [(c.type, c.status, c.reason, c.message) for c in snap.conditions]
        lines += ["", table(cond_rows)]
    if snap.events:
        event_rows: list[tuple[str, ...]] = [("LAST SEEN", "TYPE", "REASON", "MESSAGE")]
        event_rows += [
            (age(e.at, now), e.type, e.reason, e.message + (f" (x{e.count})" if e.count > 1 else ""))
            for e in snap.events[-EVENTS_SHOWN:]
        ]
        lines += ["", table(event_rows)]
    return "\n".join(lines)


def progress_lines(snap: Snapshot) -> list[str]:
    """The facts `status --watch` prints when piped, each as one line starting with its kind; the
    watcher prints a kind again only when its line changed (events: each new one once)."""
    lines = [
        f"phase {_phase(snap)}",
        f"step {snap.step}, weight {snap.weight}%",
        f"pods {pods_summary(snap)}",
    ]
    if snap.route:
        lines.append(f"router {snap.route}")
    if snap.analysis is not None:
        lines.append(f"analysis {analysis_summary(snap.analysis)}")
    return lines


def event_line(type_: str, reason: str, message: str) -> str:
    return f"event {type_} {reason}: {message}"


def tree(snap: Snapshot, now: datetime) -> str:
    """ModelDeployment -> revisions (Deployments) -> pods, with kubectl-like columns."""
    rows: list[tuple[str, ...]] = [("NAME", "KIND", "TRACK", "VERSION", "READY", "RESTARTS", "STATUS", "AGE")]
    rows.append(
        (
            snap.name,
            "ModelDeployment",
            "",
            snap.target.removeprefix("version "),
            "",
            "",
            _phase_short(snap),
            "",
        )
    )
    for i, r in enumerate(snap.revisions):
        last = i == len(snap.revisions) - 1
        branch, stem = ("└── ", "    ") if last else ("├── ", "│   ")
        state = (
            "ScaledDown"
            if r.replicas == 0 and not r.pods
            else ("Ready" if r.ready >= r.replicas else "Progressing")
        )
        if not r.created:
            state = "NotCreated"
        rows.append(
            (
                branch + r.deployment,
                "Deployment",
                _track(r),
                r.version,
                f"{r.ready}/{r.replicas}",
                str(r.restarts),
                state,
                age(r.created, now),
            )
        )
        for j, p in enumerate(r.pods):
            twig = "└── " if j == len(r.pods) - 1 else "├── "
            rows.append(
                (
                    stem + twig + p.name,
                    "Pod",
                    "",
                    "",
                    f"{p.ready}/{p.containers}",
                    str(p.restarts),
                    p.status,
                    age(p.created, now),
                )
            )
    head = f"{snap.name}: {_phase(snap)}; step {snap.step}, weight {snap.weight}%"
    return head + "\n\n" + table(rows)


def _phase_short(snap: Snapshot) -> str:
    return f"{snap.phase}({snap.pause_reason})" if snap.pause_reason else snap.phase


def history_entries(md: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stable revision and the kept ones (undo targets), newest first."""
    st = Status.from_dict(md.get("status"))
    out: list[dict[str, Any]] = []
    if st.stable:
        out.append({"revision": "current", "state": "stable", "since": None, **st.stable.to_dict()})
    out += [{"state": "kept", **h.to_dict()} for h in st.history]
    return out


def history(md: Mapping[str, Any]) -> str:
    rows: list[tuple[str, ...]] = [("REVISION", "VERSION", "GATE", "STATE", "SINCE", "MODEL URI")]
    for h in history_entries(md):
        gate = h.get("gateValue")
        rows.append(
            (
                str(h.get("revision")),
                str(h.get("version")),
                "-" if gate is None else f"{gate:.4f}",
                "stable" if h["state"] == "stable" else "kept (0 replicas)",
                str(h.get("promotedAt") or "-"),
                str(h.get("modelUri") or ""),
            )
        )
    return table(rows)

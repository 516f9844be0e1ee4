"""`kubectl mlrollout`: drive a ModelDeployment through its intent fields and read its status.

    kubectl mlrollout status  NAME [-n NS]
    kubectl mlrollout history NAME [-n NS]
    kubectl mlrollout promote NAME [--full]     # next step, or straight to stable
    kubectl mlrollout abort   NAME              # roll the canary back
    kubectl mlrollout pause   NAME / resume NAME
    kubectl mlrollout undo    NAME [--to-version V | --to-revision R]

Intents are one-shot: each carries a fresh id and the operator applies an id once. Everything goes
through `kubectl`, so the user's context, namespace and credentials apply unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from mlrollout.operator.model import Status, fmt_time

RESOURCE = "modeldeployments.mlrollout.io"


class PluginError(RuntimeError):
    pass


def _kubectl(args: Sequence[str], namespace: str | None) -> str:
    binary = shutil.which("kubectl")
    if binary is None:
        raise PluginError("kubectl not found on PATH")
    argv = [binary, *args, *(["-n", namespace] if namespace else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise PluginError(proc.stderr.strip() or f"kubectl {' '.join(args)} failed")
    return proc.stdout


def get(name: str, namespace: str | None) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(_kubectl(["get", RESOURCE, name, "-o", "json"], namespace))
    return out


def patch(name: str, namespace: str | None, body: Mapping[str, Any]) -> None:
    _kubectl(["patch", RESOURCE, name, "--type", "merge", "-p", json.dumps(body)], namespace)


def intent_patch(action: str, value: Any) -> dict[str, Any]:
    """A merge patch setting exactly one intent action (the others explicitly cleared)."""
    intent: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "promote": None, "abort": None, "undo": None}
    intent[action] = value
    return {"spec": {"intent": intent}}


def undo_target(md: Mapping[str, Any], to_version: str | None, to_revision: int | None) -> str:
    """The version to undo to: explicit, by revision, or the most recent kept one."""
    history = Status.from_dict(md.get("status")).history
    if to_version is not None:
        if not any(h.version == to_version for h in history):
            kept = ", ".join(h.version for h in history) or "none"
            raise PluginError(f"version {to_version} is not kept for undo (kept versions: {kept})")
        return to_version
    if to_revision is not None:
        for h in history:
            if h.revision == to_revision:
                return h.version
        raise PluginError(f"no revision {to_revision} in history (see `kubectl mlrollout history`)")
    if not history:
        raise PluginError("nothing to undo: no previous version is kept")
    return history[0].version


def undo_patch(version: str) -> dict[str, Any]:
    body = intent_patch("undo", {"version": version})
    body["spec"]["model"] = {"version": version, "alias": None}
    return body


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def render_status(md: Mapping[str, Any]) -> str:
    st = Status.from_dict(md.get("status"))
    spec = md.get("spec") or {}
    steps = (spec.get("rollout") or {}).get("steps") or []
    step = f"{st.current_step_index + 1}/{len(steps)}" if st.current_step_index is not None and steps else "-"
    lines = [
        f"Name:      {md['metadata']['name']}",
        f"Namespace: {md['metadata'].get('namespace', '')}",
        f"Model:     {(spec.get('model') or {}).get('name', '')}",
        f"Phase:     {st.phase}" + (f"  ({st.message})" if st.message else ""),
        f"Paused:    {bool(spec.get('paused'))}"
        + (f"  (reason: {st.pause_reason})" if st.pause_reason else ""),
        "",
        table(
            [
                ("TRACK", "VERSION", "GATE", "DEPLOYMENT", "MODEL URI"),
                *(
                    (
                        track,
                        t.version,
                        f"{t.gate_value:.4f}" if t.gate_value is not None else "-",
                        t.deployment,
                        t.model_uri,
                    )
                    for track, t in (("stable", st.stable), ("canary", st.canary))
                    if t is not None
                ),
            ]
        ),
        "",
        f"Canary weight: {st.weight}%   step: {step}",
    ]
    if st.route is not None:
        r = st.route
        applied = f"{r.weight}%" if r.weight is not None else "-"
        state = "served" if r.ready else f"not served ({r.reason}: {r.message})"
        lines.append(f"Router:    {r.kind} {r.name}: canary weight in the route {applied}, {state}")
    if st.header_route:
        rule = " and ".join(f"{h.name} {h.type} {h.value!r}" for h in st.header_route)
        lines.append(f"Header route: requests with {rule} go to the canary")
    if st.last_analysis is not None:
        a = st.last_analysis
        lines.append(
            f"Last analysis: {a.verdict} ({a.action or '-'}) of canary {a.canary_version} at "
            f"{a.evaluated_at:%Y-%m-%dT%H:%M:%SZ}: {a.message}"
        )
    if st.abandoned:
        lines.append(
            f"Last abandoned: version {st.abandoned.version} ({st.abandoned.reason}: {st.abandoned.message})"
        )
    if st.conditions:
        lines += [
            "",
            table(
                [
                    ("CONDITION", "STATUS", "REASON", "MESSAGE"),
                    *((c.type, c.status, c.reason, c.message) for c in st.conditions),
                ]
            ),
        ]
    return "\n".join(lines)


def render_history(md: Mapping[str, Any]) -> str:
    st = Status.from_dict(md.get("status"))
    rows: list[tuple[str, ...]] = [("REVISION", "VERSION", "GATE", "STATE", "SINCE", "MODEL URI")]
    if st.stable:
        gate = f"{st.stable.gate_value:.4f}" if st.stable.gate_value is not None else "-"
        rows.append(("current", st.stable.version, gate, "stable", "-", st.stable.model_uri))
    for h in st.history:
        gate = f"{h.gate_value:.4f}" if h.gate_value is not None else "-"
        rows.append(
            (
                str(h.revision),
                h.version,
                gate,
                "kept (0 replicas)",
                fmt_time(h.promoted_at) or "-",
                h.model_uri,
            )
        )
    return table(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubectl mlrollout", description="Drive mlrollout ModelDeployments."
    )
    parser.add_argument("-n", "--namespace", help="namespace (default: the kubectl context's)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("status", "history", "abort", "pause", "resume"):
        sub.add_parser(command).add_argument("name")
    promote = sub.add_parser("promote", help="advance one step, or --full to finish now")
    promote.add_argument("name")
    promote.add_argument("--full", action="store_true")
    undo = sub.add_parser("undo", help="restore a kept version instantly")
    undo.add_argument("name")
    which = undo.add_mutually_exclusive_group()
    which.add_argument("--to-version")
    which.add_argument("--to-revision", type=int)
    for p in sub.choices.values():
        p.add_argument("-n", "--namespace", dest="ns", help="namespace")
    args = parser.parse_args(argv)
    ns = args.ns or args.namespace
    try:
        if args.command == "status":
            print(render_status(get(args.name, ns)))
        elif args.command == "history":
            print(render_history(get(args.name, ns)))
        elif args.command == "promote":
            patch(args.name, ns, intent_patch("promote", "full" if args.full else "step"))
            print(f"modeldeployment/{args.name} promote ({'full' if args.full else 'step'}) requested")
        elif args.command == "abort":
            patch(args.name, ns, intent_patch("abort", True))
            print(f"modeldeployment/{args.name} abort requested")
        elif args.command in ("pause", "resume"):
            patch(args.name, ns, {"spec": {"paused": args.command == "pause"}})
            print(f"modeldeployment/{args.name} {'paused' if args.command == 'pause' else 'resumed'}")
        elif args.command == "undo":
            version = undo_target(get(args.name, ns), args.to_version, args.to_revision)
            patch(args.name, ns, undo_patch(version))
            print(f"modeldeployment/{args.name} undo to version {version} requested")
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`kubectl mlrollout diff NAME`: the recent rows where a shadow version's prediction differed from
the stable version's, read from the stable pods themselves.

Each stable pod keeps a bounded sample of its own disagreements (serving/shadow.py) and serves it at
`GET /shadow/disagreements`. The plugin reads it through the API server's pod proxy with the user's
kubectl, so who may read it is the user's `pods/proxy` permission (audited like any API call), the
rows never land in etcd or the operator's memory, and the operator needs no new grant. Input rows
are only in the sample when the shadow step's `recordInputs` allowed it.

    kubectl mlrollout diff NAME [--limit 20] [-o json|yaml]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from mlrollout.operator.plugin.cli import Command, register
from mlrollout.operator.plugin.kubectl import Kubectl, PluginError
from mlrollout.operator.plugin.output import FORMATS, render_data

LABEL_TRACK = "mlrollout.io/track"  # children.LABEL_TRACK (not imported: the plugin stays kopf-free)
SERVING_APP = "mlrollout-serving"
INPUT_WIDTH = 60  # characters of an input row in the table; -o json has all of it


def stable_pods(pods: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, int]]:
    """(namespace, pod, port) of the running stable pods: where the comparisons happen."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get("app.kubernetes.io/name") != SERVING_APP or labels.get(LABEL_TRACK) != "stable":
            continue
        if (pod.get("status") or {}).get("phase") != "Running":
            continue
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        ports = [p for p in containers[0].get("ports") or [] if p.get("name") == "http"]
        out.append(
            (
                meta.get("namespace", ""),
                meta.get("name", ""),
                int(ports[0]["containerPort"]) if ports else 8080,
            )
        )
    return sorted(out)


def merge(answers: Mapping[str, Mapping[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Every pod's sample in one list, newest first, each row naming its pod."""
    rows = [
        {**row, "pod": pod}
        for pod, answer in answers.items()
        for row in answer.get("disagreements") or []
        if isinstance(row, dict)
    ]
    rows.sort(
        key=lambda r: (str(r.get("time", "")), str(r.get("requestId", "")), r.get("row", 0)), reverse=True
    )
    return rows[:limit]


def _cell(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as aligned columns (the INPUT column only when some row carries its input)."""
    with_input = any("input" in r for r in rows)
    head = ["TIME", "REQUEST ID", "ROW", "STABLE", "SHADOW"] + (["INPUT"] if with_input else [])
    lines = [head]
    for r in rows:
        line = [
            str(r.get("time", "")),
            str(r.get("requestId", "")),
            str(r.get("row", "")),
            f"v{r.get('stableVersion', '?')}: {_cell(r.get('stablePrediction'), 24)}",
            f"v{r.get('shadowVersion', '?')}: {_cell(r.get('shadowPrediction'), 24)}",
        ]
        if with_input:
            line.append(_cell(r["input"], INPUT_WIDTH) if "input" in r else "-")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def collect(k: Kubectl, name: str, limit: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each stable pod's answer, and the pods that could not be read (with why)."""
    _, pods = k.children(name)
    targets = stable_pods(pods)
    if not targets:
        raise PluginError(f"modeldeployment/{name} has no running stable pods to read disagreements from")
    answers: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for namespace, pod, port in targets:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/shadow/disagreements?limit={limit}"
        try:
            answers[pod] = json.loads(k.run(["get", "--raw", path], namespaced=False))
        except (PluginError, json.JSONDecodeError) as exc:
            problems.append(f"{pod}: {exc}")
    return answers, problems


def run(args: argparse.Namespace, k: Kubectl) -> int:
    answers, problems = collect(k, args.name, args.limit)
    rows = merge(answers, args.limit)
    for problem in problems:
        print(f"warning: could not read {problem}", file=sys.stderr)
    if args.output:
        sys.stdout.write(render_data({"disagreements": rows, "pods": sorted(answers)}, args.output))
        return 0
    if not rows:
        mirroring = [a["shadow"]["version"] for a in answers.values() if a.get("shadow")]
        now = f"; the stable pods mirror to version {mirroring[0]} now" if mirroring else ""
        print(f"no disagreements recorded by {len(answers)} stable pod(s) of {args.name}{now}")
        return 0 if answers else 1
    print(table(rows))
    return 0


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--limit", type=int, default=20, help="newest rows to show, over all stable pods (default 20)"
    )


DIFF = Command(
    "rows where the shadow version disagreed with stable, from the stable pods' recent sample",
    run,
    _arguments,
    reads=True,
)


if __name__ != "__main__":  # run as a script, the plugin package imports (and registers) this module too
    register("diff", DIFF)


def main(argv: Sequence[str] | None = None) -> int:
    """The same command on its own (`python -P -m mlrollout.operator.plugin.diff NAME`)."""
    parser = argparse.ArgumentParser(prog="kubectl mlrollout diff", description=DIFF.help)
    parser.add_argument("name", metavar="NAME")
    _arguments(parser)
    parser.add_argument("-o", "--output", choices=FORMATS)
    parser.add_argument("-n", "--namespace")
    parser.add_argument("--context")
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(argv)
    try:
        return run(args, Kubectl(args.namespace, args.context, args.kubeconfig))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

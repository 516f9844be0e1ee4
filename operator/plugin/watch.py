"""`kubectl mlrollout status NAME --watch`: follow a rollout until the operator decides it, like
`kubectl rollout status`. On a terminal the status frame is redrawn in place; piped, each fact is
one line printed when it changes (see views.progress_lines), so logs and CI output stay readable.
With `-o json|yaml` every changed snapshot is one document.

Exit codes: 0 promoted, 3 not promoted (RolledBack, Rejected, Degraded, or a model version that
does not exist), 4 `--timeout` passed, 1 an error (kubectl failed, the object is gone), 2 usage.
The decision is the Promoted condition for the current generation (planner/outcome.py), so a watch
started right after `kubectl apply` never reports the previous rollout's result.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from mlrollout.operator.model import fmt_time
from mlrollout.operator.plugin.kubectl import Kubectl, NotFound, PluginError
from mlrollout.operator.plugin.output import render_data
from mlrollout.operator.plugin.snapshot import Snapshot, outcome_of, snapshot, to_data
from mlrollout.operator.plugin.views import EVENTS_SHOWN, event_line, frame, progress_lines

EXIT_PROMOTED, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_PROMOTED, EXIT_TIMEOUT = 0, 1, 2, 3, 4
CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end: redraw in place without flicker of scrollback
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `5m`, `1h30m`, `500ms` (kubectl's --timeout forms); 0 = no limit."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r} (examples: 90s, 5m, 1h30m)")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def fit(text: str, size: tuple[int, int]) -> str:
    """The view cut to the terminal (columns, lines), so a redraw never wraps or scrolls."""
    columns, lines = size
    rows = [row if len(row) < columns else row[: max(columns - 2, 1)] + "…" for row in text.splitlines()]
    return "\n".join(rows[: max(lines - 1, 1)])


@dataclass
class LineLog:
    """Piped output: a fact's line is printed when it differs from the last one of its kind, each
    Event once (the first snapshot shows the latest few)."""

    last: dict[str, str] = field(default_factory=dict)
    events: set[tuple[str, str, str]] = field(default_factory=set)
    started: bool = False

    def update(self, snap: Snapshot) -> list[str]:
        out: list[str] = []
        for line in progress_lines(snap):
            kind = line.split(" ", 1)[0]
            if self.last.get(kind) != line:
                self.last[kind] = line
                out.append(line)
        fresh = [e for e in snap.events if (fmt_time(e.at) or "", e.reason, e.message) not in self.events]
        if not self.started:
            fresh = fresh[-EVENTS_SHOWN:]
            self.events.update((fmt_time(e.at) or "", e.reason, e.message) for e in snap.events)
            self.started = True
        for e in fresh:
            self.events.add((fmt_time(e.at) or "", e.reason, e.message))
            out.append(event_line(e.type, e.reason, e.message))
        return out


def fetch(kubectl: Kubectl, name: str) -> tuple[Snapshot, dict[str, Any]]:
    md = kubectl.md(name)
    deployments, pods = kubectl.children(name)
    return snapshot(md, deployments, pods, kubectl.events(name)), md


@dataclass
class Watch:
    kubectl: Kubectl
    name: str
    timeout: float = 0.0  # seconds; 0 = until decided
    interval: float = 2.0
    output: str | None = None  # json | yaml
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    tty: bool | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def run(self) -> int:
        tty = self.out.isatty() if self.tty is None else self.tty
        deadline = self.clock() + self.timeout if self.timeout > 0 else None
        lines, last_doc, warned = LineLog(), "", ""
        snap: Snapshot | None = None
        while True:
            try:
                snap, md = fetch(self.kubectl, self.name)
                warned = ""
            except NotFound as exc:
                print(f"error: {exc}", file=self.err)
                return EXIT_ERROR
            except PluginError as exc:  # an API hiccup: say so once, keep watching until the deadline
                if str(exc) != warned:
                    print(f"warning: {exc} (retrying)", file=self.err)
                    warned = str(exc)
                md = {}
            if md:
                assert snap is not None
                if self.output:
                    doc = render_data(to_data(snap), self.output, stream=True)
                    if doc != last_doc:
                        self.out.write(doc)
                        last_doc = doc
                elif tty:
                    title = f"kubectl mlrollout status {self.name} --watch  (every {self.interval:g}s)"
                    view = f"{title}  {fmt_time(self.now())}\n\n{frame(snap, self.now())}"
                    self.out.write(CLEAR + fit(view, shutil.get_terminal_size((120, 50))) + "\n")
                else:
                    for line in lines.update(snap):
                        print(line, file=self.out)
                self.out.flush()
                decided = outcome_of(md)
                if decided is not None:
                    return self._finish(*decided)
            if deadline is not None and self.clock() >= deadline:
                where = f" (phase {snap.phase}: {snap.message})" if snap is not None else ""
                waited = f"{self.timeout:g}s waiting for modeldeployment/{self.name}"
                print(f"error: timed out after {waited}{where}", file=self.err)
                return EXIT_TIMEOUT
            pause = (
                self.interval if deadline is None else min(self.interval, max(0.0, deadline - self.clock()))
            )
            self.sleep(pause)

    def _finish(self, result: str, reason: str, message: str) -> int:
        if result == "promoted":
            if not self.output:
                print(f"modeldeployment/{self.name} promoted: {message}", file=self.out)
            return EXIT_PROMOTED
        print(f"error: modeldeployment/{self.name} was not promoted ({reason}): {message}", file=self.err)
        return EXIT_NOT_PROMOTED

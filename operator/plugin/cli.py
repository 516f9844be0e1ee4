"""The subcommand table and `main`. A subcommand is one `Command` in `COMMANDS` (name -> arguments +
handler); another module adds one with `register(...)` before `main` runs, and it gets the global
options, `-o json|yaml` when it reads, `--help` and shell completion for free."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mlrollout.operator.plugin.intents import intent_patch, undo_patch, undo_target
from mlrollout.operator.plugin.kubectl import Kubectl, PluginError
from mlrollout.operator.plugin.output import FORMATS, render_data
from mlrollout.operator.plugin.snapshot import to_data
from mlrollout.operator.plugin.views import frame, history, history_entries, tree
from mlrollout.operator.plugin.watch import EXIT_ERROR, EXIT_USAGE, Watch, fetch, parse_duration

Handler = Callable[[argparse.Namespace, Kubectl], int]


@dataclass(frozen=True)
class Command:
    help: str
    run: Handler
    arguments: Callable[[argparse.ArgumentParser], object] = lambda parser: None
    reads: bool = False  # a read command: gets -o json|yaml
    takes_name: bool = True  # a ModelDeployment NAME positional (completed from the cluster)
    hidden: bool = False


COMMANDS: dict[str, Command] = {}


def register(name: str, command: Command) -> None:
    if name in COMMANDS:
        raise ValueError(f"subcommand {name!r} is already registered")
    COMMANDS[name] = command


def _say(text: str) -> int:
    print(text)
    return 0


def _now() -> datetime:
    return datetime.now(UTC)


def _status(args: argparse.Namespace, k: Kubectl) -> int:
    if args.watch:
        return Watch(k, args.name, timeout=args.timeout, interval=args.interval, output=args.output).run()
    snap, _ = fetch(k, args.name)
    if args.output:
        sys.stdout.write(render_data(to_data(snap), args.output))
        return 0
    return _say(frame(snap, _now()))


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-w", "--watch", action="store_true", help="follow the rollout until it is decided")
    p.add_argument(
        "--timeout",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="with --watch: give up after this long (90s, 10m; default: no limit), exit code 4",
    )
    p.add_argument("--interval", type=parse_duration, default=2.0, metavar="DURATION", help=argparse.SUPPRESS)


def _get(args: argparse.Namespace, k: Kubectl) -> int:
    snap, _ = fetch(k, args.name)
    if args.output:
        sys.stdout.write(render_data(to_data(snap), args.output))
        return 0
    return _say(tree(snap, _now()))


def _history(args: argparse.Namespace, k: Kubectl) -> int:
    md = k.md(args.name)
    if args.output:
        sys.stdout.write(render_data(history_entries(md), args.output))
        return 0
    return _say(history(md))


def _promote(args: argparse.Namespace, k: Kubectl) -> int:
    how = "full" if args.full else "step"
    k.patch_md(args.name, intent_patch("promote", how))
    return _say(f"modeldeployment/{args.name} promote ({how}) requested")


def _abort(args: argparse.Namespace, k: Kubectl) -> int:
    k.patch_md(args.name, intent_patch("abort", True))
    return _say(f"modeldeployment/{args.name} abort requested")


def _pause(args: argparse.Namespace, k: Kubectl) -> int:
    k.patch_md(args.name, {"spec": {"paused": True}})
    return _say(f"modeldeployment/{args.name} paused")


def _resume(args: argparse.Namespace, k: Kubectl) -> int:
    k.patch_md(args.name, {"spec": {"paused": False}})
    return _say(f"modeldeployment/{args.name} resumed")


def _undo(args: argparse.Namespace, k: Kubectl) -> int:
    version = undo_target(k.md(args.name), args.to_version, args.to_revision)
    k.patch_md(args.name, undo_patch(version))
    return _say(f"modeldeployment/{args.name} undo to version {version} requested")


def _undo_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--to-version", metavar="VERSION", help="a kept model version")
    which.add_argument("--to-revision", type=int, metavar="N", help="a revision number from `history`")


def _completion(args: argparse.Namespace, k: Kubectl) -> int:
    from mlrollout.operator.plugin.completion import script

    sys.stdout.write(script(args.shell))
    return 0


for _name, _command in {
    "status": Command(
        "the rollout now (pods, weight, step, analysis, Events); --watch follows it to the end",
        _status,
        _status_args,
        reads=True,
    ),
    "get": Command("the ModelDeployment as a tree: revisions and their pods", _get, reads=True),
    "history": Command("the stable revision and the kept ones (undo targets)", _history, reads=True),
    "promote": Command(
        "advance one step, or --full to finish now",
        _promote,
        lambda p: p.add_argument("--full", action="store_true", help="skip every remaining step"),
    ),
    "abort": Command("roll the canary back", _abort),
    "pause": Command("freeze step progress (spec.paused)", _pause),
    "resume": Command("continue after pause", _resume),
    "undo": Command("restore a kept version instantly", _undo, _undo_args),
    "completion": Command(
        "print a bash or zsh completion script for kubectl-mlrollout",
        _completion,
        lambda p: p.add_argument("shell", choices=("bash", "zsh")),
        takes_name=False,
    ),
}.items():
    register(_name, _command)


EPILOG = """exit codes of `status --watch`: 0 promoted, 3 not promoted (rolled back, rejected, degraded),
4 --timeout passed, 1 error, 2 usage. kubectl wait works too:
  kubectl wait --for=condition=Promoted md/NAME    (or condition=Settled for either outcome)"""


def _global_options(p: argparse.ArgumentParser, default: object) -> None:
    p.add_argument("-n", "--namespace", default=default, help="namespace (default: the kubectl context's)")
    p.add_argument("--context", default=default, help="kubeconfig context")
    p.add_argument("--kubeconfig", default=default, help="kubeconfig file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl mlrollout",
        description="Inspect and drive mlrollout ModelDeployments.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help) if not command.hidden else sub.add_parser(name)
        if command.takes_name:
            p.add_argument("name", metavar="NAME", help="the ModelDeployment")
        command.arguments(p)
        if command.reads:
            p.add_argument("-o", "--output", choices=FORMATS, help="print the data as json or yaml")
        # Accepted after the subcommand too (kubectl style); SUPPRESS keeps a value given before it.
        _global_options(p, argparse.SUPPRESS)
    # A hidden subcommand parses but stays out of --help.
    sub._choices_actions[:] = [a for a in sub._choices_actions if not COMMANDS[a.dest].hidden]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["__complete"]:  # the words as typed, not parsed: `-n` in them is data here
        from mlrollout.operator.plugin.completion import complete_main

        return complete_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, a usage error 2
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    k = Kubectl(args.namespace, args.context, args.kubeconfig)
    try:
        return COMMANDS[args.command].run(args, k)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130

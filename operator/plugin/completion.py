"""Shell completion, derived from the subcommand table (so a registered subcommand completes too).

- `kubectl mlrollout <TAB>`: kubectl (1.26+) runs `kubectl_complete-mlrollout` (a console script
  installed with the plugin) with the words typed after `mlrollout`, the last one partial, and reads
  one candidate per line plus a `:<directive>` line (cobra's protocol). Nothing to source.
  A krew install has no second executable: `kubectl_complete-mlrollout` may be any script that
  runs `kubectl-mlrollout __complete "$@"` (the README shows one).
- `kubectl-mlrollout <TAB>` called directly: `source <(kubectl mlrollout completion bash)` (or zsh).

Candidates: subcommands, each subcommand's flags, `-o` formats, `completion` shells, and
ModelDeployment names (and namespaces after `-n`) read from the cluster with the user's kubectl.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mlrollout.operator.plugin.kubectl import Kubectl, PluginError

NO_FILES = 4  # cobra.ShellCompDirectiveNoFileComp
Lister = Callable[[Kubectl], list[str]]


def _namespaces(k: Kubectl) -> list[str]:
    return k.run(["get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}"], namespaced=False).split()


def _names(k: Kubectl) -> list[str]:
    return k.md_names()


def _option_values(words: Sequence[str], flags: tuple[str, ...]) -> str | None:
    for i, word in enumerate(words[:-1]):
        if word in flags and i + 1 < len(words) - 1:
            return words[i + 1]
        for flag in flags:
            if flag.startswith("--") and word.startswith(flag + "="):
                return word.split("=", 1)[1]
    return None


def complete(
    words: Sequence[str], *, names: Lister = _names, namespaces: Lister = _namespaces
) -> tuple[list[str], int]:
    """(candidates, directive) for `words` (after `mlrollout`; the last one is being typed)."""
    from mlrollout.operator.plugin.cli import COMMANDS, build_parser

    words = list(words) or [""]
    partial, before = words[-1], words[:-1]
    k = Kubectl(
        _option_values(words, ("-n", "--namespace")),
        _option_values(words, ("--context",)),
        _option_values(words, ("--kubeconfig",)),
    )
    takes_value = {"-n", "--namespace", "--context", "--kubeconfig", "-o", "--output", "--timeout",
                   "--to-version", "--to-revision"}  # fmt: skip
    previous = before[-1] if before else ""
    if previous in ("-n", "--namespace"):
        return _matching(_ask(namespaces, k), partial), NO_FILES
    if previous in ("-o", "--output"):
        return _matching(["json", "yaml"], partial), NO_FILES
    if previous in takes_value:
        return [], NO_FILES
    positionals = [
        w
        for i, w in enumerate(before)
        if not w.startswith("-") and (i == 0 or before[i - 1] not in takes_value)
    ]
    visible = [name for name, c in COMMANDS.items() if not c.hidden]
    if not positionals:
        if partial.startswith("-"):
            return _matching(["-n", "--namespace", "--context", "--kubeconfig", "--help"], partial), NO_FILES
        return _matching(visible, partial), NO_FILES
    command = COMMANDS.get(positionals[0])
    if command is None:
        return [], NO_FILES
    if partial.startswith("-"):
        return _matching(_flags(build_parser(), positionals[0]), partial), NO_FILES
    if positionals[0] == "completion" and len(positionals) == 1:
        return _matching(["bash", "zsh"], partial), NO_FILES
    if command.takes_name and len(positionals) == 1:
        return _matching(_ask(names, k), partial), NO_FILES
    return [], NO_FILES


def _ask(lister: Lister, k: Kubectl) -> list[str]:
    try:
        return lister(k)
    except PluginError:  # no cluster, no permission: complete nothing rather than print errors
        return []


def _matching(candidates: Sequence[str], partial: str) -> list[str]:
    return [c for c in candidates if c.startswith(partial)]


def _flags(parser: argparse.ArgumentParser, command: str) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub: argparse.ArgumentParser = action.choices[command]
            return sorted({o for a in sub._actions for o in a.option_strings if a.help != argparse.SUPPRESS})
    return []


def complete_main(words: Sequence[str]) -> int:
    candidates, directive = complete(words)
    sys.stdout.write("".join(f"{c}\n" for c in candidates) + f":{directive}\n")
    return 0


def main() -> int:
    """The `kubectl_complete-mlrollout` console script kubectl calls."""
    return complete_main(sys.argv[1:])


_BASH = """# bash completion for kubectl-mlrollout (kubectl mlrollout completes through kubectl itself)
_kubectl_mlrollout() {
    local IFS=$'\\n'
    COMPREPLY=($(kubectl-mlrollout __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null | grep -v '^:'))
}
complete -F _kubectl_mlrollout kubectl-mlrollout
"""

_ZSH = """#compdef kubectl-mlrollout
# zsh completion for kubectl-mlrollout (kubectl mlrollout completes through kubectl itself)
_kubectl_mlrollout() {
    local -a candidates
    candidates=("${(@f)$(kubectl-mlrollout __complete "${(@)words[2,CURRENT]}" 2>/dev/null | grep -v '^:')}")
    compadd -a candidates
}
compdef _kubectl_mlrollout kubectl-mlrollout
"""


def script(shell: str) -> str:
    return {"bash": _BASH, "zsh": _ZSH}[shell]

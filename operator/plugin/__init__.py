"""`kubectl mlrollout`: inspect a ModelDeployment and drive it through its intent fields.

    kubectl mlrollout status  NAME [--watch [--timeout 10m]] [-o json|yaml]
    kubectl mlrollout get     NAME [-o json|yaml]        # tree: revisions -> pods
    kubectl mlrollout history NAME [-o json|yaml]
    kubectl mlrollout promote NAME [--full]             # next step, or straight to stable
    kubectl mlrollout abort   NAME                      # roll the canary back
    kubectl mlrollout pause   NAME / resume NAME
    kubectl mlrollout undo    NAME [--to-version V | --to-revision R]
    kubectl mlrollout completion bash|zsh
    kubectl mlrollout diff    NAME [--limit 20] [-o json|yaml]   # shadow disagreements (diff.py)

Everything goes through the user's `kubectl` (kubectl.py). Modules: `cli` (the subcommand table and
`main`; `register` adds one), `snapshot` (the object, its Deployments, pods and Events as one value),
`views` (text), `watch` (`status --watch`), `output` (`-o json|yaml`), `completion`, `intents`,
`diff` (shadow disagreements; it registers itself, so importing this package is enough).
"""

from mlrollout.operator.plugin import diff as _diff  # noqa: F401 - registers `diff`
from mlrollout.operator.plugin.cli import COMMANDS, Command, main, register
from mlrollout.operator.plugin.intents import intent_patch, undo_patch, undo_target
from mlrollout.operator.plugin.kubectl import PluginError

__all__ = [
    "COMMANDS",
    "Command",
    "PluginError",
    "intent_patch",
    "main",
    "register",
    "undo_patch",
    "undo_target",
]

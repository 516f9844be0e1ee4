"""The plugin's only way to the cluster: the user's `kubectl`, so their kubeconfig, context,
namespace and credentials apply unchanged (kubectl passes none of its own flags to a plugin; the
plugin takes `-n`, `--context` and `--kubeconfig` itself and hands them back to kubectl)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RESOURCE = "modeldeployments.mlrollout.io"
LABEL_MD = "mlrollout.io/model-deployment"  # children.LABEL_MD (not imported: kopf-free plugin)
CALL_TIMEOUT = 60.0
_KLOG = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ "
)  # client-go's log lines, e.g. "E1201 23:39:26.779236 ..."


class PluginError(RuntimeError):
    """A problem the user can act on; printed as `error: ...` with a non-zero exit."""


class NotFound(PluginError):
    pass


def kubectl_error(stderr: str) -> str:
    """kubectl's own message without client-go's log lines (an unreachable server logs the same
    retry five times before saying so)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    kept = [line for line in lines if not _KLOG.match(line)]
    return "\n".join(kept or lines[-1:])


@dataclass(frozen=True)
class Kubectl:
    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None

    def run(self, args: Sequence[str], *, namespaced: bool = True) -> str:
        binary = shutil.which("kubectl")
        if binary is None:
            raise PluginError("kubectl not found on PATH")
        argv = [binary, *args]
        if namespaced and self.namespace:
            argv += ["-n", self.namespace]
        if self.context:
            argv += ["--context", self.context]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=CALL_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise PluginError(f"kubectl {' '.join(args)} did not answer in {CALL_TIMEOUT:.0f}s") from exc
        if proc.returncode != 0:
            message = kubectl_error(proc.stderr) or f"kubectl {' '.join(args)} failed"
            if "(NotFound)" in message:
                raise NotFound(message.removeprefix("Error from server (NotFound): "))
            raise PluginError(message.removeprefix("error: "))
        return proc.stdout

    def json(self, args: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run([*args, "-o", "json"]))
        return out

    def md(self, name: str) -> dict[str, Any]:
        return self.json(["get", RESOURCE, name])

    def patch_md(self, name: str, body: Mapping[str, Any]) -> None:
        self.run(["patch", RESOURCE, name, "--type", "merge", "-p", json.dumps(body)])

    def children(self, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The serving Deployments and pods of one ModelDeployment, in one call."""
        items = self.json(["get", "deployments.apps,pods", "-l", f"{LABEL_MD}={name}"]).get("items") or []
        deployments = [i for i in items if i.get("kind") == "Deployment"]
        pods = [i for i in items if i.get("kind") == "Pod"]
        return deployments, pods

    def events(self, name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=ModelDeployment,involvedObject.name={name}"
        return list(self.json(["get", "events", "--field-selector", selector]).get("items") or [])

    def md_names(self) -> list[str]:
        out = self.run(["get", RESOURCE, "-o", "jsonpath={.items[*].metadata.name}"])
        return out.split()

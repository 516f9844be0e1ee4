"""Render the kustomizations with kubectl (no cluster needed) and look objects up by kind/name."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
NAMESPACE = "mlrollout-system"
SERVICE_ACCOUNT = "mlrollout-operator"


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomizations (it embeds kustomize)"
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


@dataclass(frozen=True)
class Grant:
    """One (api group, resource, verb) the operator says it needs."""

    group: str
    resource: str
    verb: str


def documented_grants(rbac_md: Path) -> list[Grant]:
    """Rows of the table in operator/RBAC.md: | `group` | `resource` | verbs | why |."""
    grants = []
    for line in rbac_md.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[1].startswith("`"):
            continue
        group = re.sub(r"\(core\)|`|\"", "", cells[0]).strip()
        resource = cells[1].strip("`")
        grants += [Grant(group, resource, v.strip()) for v in cells[2].split(",") if v.strip()]
    return grants


def role_allows(rules: list[dict[str, Any]], grant: Grant) -> bool:
    return any(
        grant.group in r.get("apiGroups", [])
        and grant.resource in r.get("resources", [])
        and grant.verb in r.get("verbs", [])
        for r in rules
    )

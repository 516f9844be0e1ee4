"""`-o json|yaml` for every read command: the same data the tables show, as one document (or, with
--watch, one document per change: JSON Lines, or YAML documents separated by `---`)."""

from __future__ import annotations

import json
from typing import Any

from mlrollout.operator.plugin.kubectl import PluginError

FORMATS = ("json", "yaml")


def render_data(data: Any, fmt: str, *, stream: bool = False) -> str:
    if fmt == "json":
        return json.dumps(data, separators=(",", ":")) + "\n" if stream else json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        try:
            import yaml  # PyYAML: in the operator extra; a bare plugin install may lack it
        except ImportError as exc:
            raise PluginError("-o yaml needs PyYAML (pip install pyyaml); -o json needs nothing") from exc
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
        return f"---\n{text}" if stream else text
    raise ValueError(f"unknown output format {fmt!r} (use one of: {', '.join(FORMATS)})")

"""Output files written so that a reader never sees a half-written one and a rerun gives the same bytes.

A run writes `<output>.partial` and a checkpoint `<output>.partial.json` after every block (the partial
file is flushed and fsynced first, so the checkpoint never points past what is on disk); a resumed run
truncates the partial file to the checkpoint's length and continues from its input offset. The last step
is an fsync and a rename onto `<output>`.

A shard of a sharded run writes `part-<i>.csv` that way, then `part-<i>.json` (its rows and identity),
then looks for every other shard's `.json`: the shard that finds all of them writes `manifest.json` and
then `_SUCCESS`. Each shard writes its own marker before it looks, so the last one to finish always
sees every marker; two shards finishing together write the same manifest bytes through a rename. A
failed shard writes no marker, so a failed run never has a manifest."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from mlrollout.serving.batch.errors import BatchInputError

MANIFEST = "manifest.json"
MARKER = re.compile(r"part-\d{5}\.json")
SUCCESS = "_SUCCESS"


def part_name(shard: int) -> str:
    return f"part-{shard:05d}.csv"


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_output_dir(directory: Path, identity: dict[str, Any]) -> None:
    """Refuse a directory holding parts of a different run (another input, model or shard count):
    its markers would mix into this run's manifest."""
    # Only the shards' done-markers (part-00003.json), not a running shard's checkpoint
    # (part-00003.csv.partial.json), whose identity also names its shard.
    for marker in sorted(p for p in directory.glob("part-*.json") if MARKER.fullmatch(p.name)):
        found = read_json(marker)
        if isinstance(found, dict) and found.get("identity") != identity:
            raise BatchInputError(
                str(directory),
                f"holds results of another run ({marker.name}: {json.dumps(found.get('identity'))}); "
                "use an empty output directory",
            )


def finish_shard(directory: Path, shard: int, identity: dict[str, Any], summary: dict[str, Any]) -> bool:
    """Write this shard's marker, then the manifest if every shard is done. True if it wrote it."""
    write_json(directory / f"part-{shard:05d}.json", {"identity": identity, **summary})
    shards = int(identity["shards"])
    parts: list[dict[str, Any]] = []
    for i in range(shards):
        marker = read_json(directory / f"part-{i:05d}.json")
        if not isinstance(marker, dict) or marker.get("identity") != identity:
            return False
        parts.append({"file": part_name(i), "rows": int(marker["rows"])})
    manifest = {**identity, "parts": parts, "rows": sum(p["rows"] for p in parts)}
    write_json(directory / MANIFEST, manifest)
    atomic_write(directory / SUCCESS, b"")
    return True

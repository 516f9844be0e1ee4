"""The streamed scoring loop: read a block, check it as serving would, predict, append, checkpoint.

Memory is one block of input (DEFAULT_BLOCK_BYTES, a few hundred thousand rows of a typical table) and
its predictions, whatever the file's size. The model is the one `load_model` gives serving (the same
signature checks and verified fast path)."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from mlrollout.serving.batch import csv_blocks
from mlrollout.serving.batch.errors import BatchInputError, BatchIOError
from mlrollout.serving.batch.output import read_json, write_json
from mlrollout.serving.batch.tables import Layout, check, read_block, to_table
from mlrollout.serving.model import LoadedModel

PREDICTION = "prediction"


@dataclass(frozen=True)
class Job:
    model_uri: str
    source: str  # the input as the user named it (path or URI), for messages and identity
    input: Path  # a local copy of it
    output: Path  # the file this run (or this shard) produces
    id_column: str | None = None
    shard: int = 0
    shards: int = 1
    block_bytes: int = csv_blocks.DEFAULT_BLOCK_BYTES
    resume: bool = True

    @property
    def parquet(self) -> bool:
        return self.input.suffix.lower() in {".parquet", ".pq"}

    def identity(self) -> dict[str, Any]:
        """What must match for a checkpoint or a shard marker to belong to this run."""
        stat = self.input.stat()
        return {
            "model": self.model_uri,
            "input": self.source,
            "inputBytes": stat.st_size,
            "idColumn": self.id_column,
            "shards": self.shards,
        }


@dataclass
class Progress:
    rows: int = 0
    done: int = 0  # input units done (bytes, or row groups for Parquet)
    total: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Piece:
    """One block's parsed input: its table, ids, where it ends in the input, how to name its lines."""

    table: npt.NDArray[Any]
    ids: list[str] | None
    end: int  # the checkpoint's offset after this piece (a byte offset, or row groups done)
    done: int  # input units of this shard done after it (for the progress share)
    line_of: Callable[[int], int]


def score(job: Job, model: LoadedModel, on_progress: Callable[[Progress], None] | None = None) -> Progress:
    partial = job.output.with_name(job.output.name + ".partial")
    checkpoint = job.output.with_name(job.output.name + ".partial.json")
    identity = job.identity() | {"shard": job.shard}
    state = read_json(checkpoint) if job.resume else None
    resumed = isinstance(state, dict) and state.get("identity") == identity and partial.exists()
    progress = Progress()
    try:
        out = partial.open("r+b" if resumed else "wb")
    except OSError as exc:
        raise BatchIOError(f"cannot write {partial}: {exc}") from exc
    with out:
        if resumed:
            assert isinstance(state, dict)
            out.truncate(int(state["outputBytes"]))
            out.seek(int(state["outputBytes"]))
            progress.rows = int(state["rows"])
            offset: int | None = int(state["offset"])
        else:
            offset = None
        pieces, progress.total, first = _pieces(job, model, offset)
        if not resumed:
            out.write(_header(job, model))
        progress.done = first
        for piece in pieces:
            predictions = _predict(model, piece)
            out.write(_rows(piece.ids, predictions))
            out.flush()
            os.fsync(out.fileno())
            progress.rows += len(piece.table)
            progress.done = piece.done
            write_json(
                checkpoint,
                {"identity": identity, "offset": piece.end, "rows": progress.rows, "outputBytes": out.tell()},
            )
            if on_progress is not None:
                on_progress(progress)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(job.output)
    checkpoint.unlink(missing_ok=True)
    return progress


def _predict(model: LoadedModel, piece: Piece) -> npt.NDArray[Any]:
    if not len(piece.table):
        return np.empty(0)
    return np.asarray(model.predict(piece.table))


def _header(job: Job, model: LoadedModel) -> bytes:
    names = ([job.id_column] if job.id_column else []) + [PREDICTION]
    return (",".join(_quote(n) for n in names) + "\n").encode()


def _rows(ids: list[str] | None, predictions: npt.NDArray[Any]) -> bytes:
    import pandas as pd

    if not len(predictions):
        return b""
    data: dict[str, Any] = {}
    if ids is not None:
        data["id"] = ids
    if predictions.ndim == 1:
        data[PREDICTION] = predictions
    else:
        for j in range(predictions.shape[1]):
            data[f"{PREDICTION}_{j}"] = predictions[:, j]
    buffer = io.StringIO()
    pd.DataFrame(data).to_csv(buffer, header=False, index=False, lineterminator="\n")
    return buffer.getvalue().encode()


def _quote(name: str) -> str:
    return f'"{name.replace(chr(34), chr(34) * 2)}"' if any(c in name for c in ',"\n') else name


# --------------------------------------------------------------------------- sources
def _pieces(job: Job, model: LoadedModel, offset: int | None) -> tuple[Iterator[Piece], int, int]:
    """The input pieces from `offset` (or the shard's start), the total units and the first unit."""
    if job.parquet:
        return _parquet_pieces(job, model, offset)
    return _csv_pieces(job, model, offset)


def _csv_pieces(job: Job, model: LoadedModel, offset: int | None) -> tuple[Iterator[Piece], int, int]:
    header, data_start = csv_blocks.read_header(job.input)
    layout = Layout.of(header, model.schema, job.id_column, job.source)
    begin, end = csv_blocks.shard_range(job.input, data_start, job.shard, job.shards)
    first = begin if offset is None else max(begin, min(offset, end))

    def pieces() -> Iterator[Piece]:
        for block in csv_blocks.blocks(job.input, first, end, job.block_bytes):

            def line_of(row: int, block: csv_blocks.Block = block) -> int:
                return csv_blocks.line_number(job.input, block.start) + csv_blocks.row_line_offset(
                    block.data, row
                )

            try:
                frame = read_block(block.data, layout, model.schema)
            except ValueError as exc:  # pandas' tokenizer: wrong field count, bad quoting
                raise BatchInputError(
                    job.source, f"cannot be parsed near line {line_of(0)}: {exc}", line=None
                ) from None
            table, ids = to_table(frame, layout, model.schema, job.source, line_of)
            check(table, model.schema, model.categories, job.source, line_of)
            yield Piece(table=table, ids=ids, end=block.end, done=block.end - begin, line_of=line_of)

    return pieces(), end - begin, first - begin


def _parquet_pieces(job: Job, model: LoadedModel, offset: int | None) -> tuple[Iterator[Piece], int, int]:
    """Parquet by row group: shard i owns groups i, i+N, ...; the checkpoint counts groups done."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise BatchInputError(
            job.source, "reading Parquet needs pyarrow (pip install pyarrow); CSV needs nothing more"
        ) from None
    try:
        file = pq.ParquetFile(job.input)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        raise BatchInputError(job.source, f"is not a readable Parquet file: {exc}") from None
    header = [str(n) for n in file.schema_arrow.names]
    layout = Layout.of(header, model.schema, job.id_column, job.source)
    groups = list(range(job.shard, file.num_row_groups, job.shards))
    starts = np.concatenate(
        [[0], np.cumsum([file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)])]
    )
    done = 0 if offset is None else max(0, min(offset, len(groups)))
    columns = list(dict.fromkeys([*layout.present, *([job.id_column] if job.id_column else [])]))

    def pieces() -> Iterator[Piece]:
        for index in range(done, len(groups)):
            group = groups[index]
            frame = file.read_row_group(group, columns=columns).to_pandas()

            def row_of(row: int, group: int = group) -> int:
                return int(starts[group]) + row + 1

            table, ids = to_table(frame, layout, model.schema, job.source, row_of)
            check(table, model.schema, model.categories, job.source, row_of)
            yield Piece(table=table, ids=ids, end=index + 1, done=index + 1, line_of=row_of)

    return pieces(), len(groups), done

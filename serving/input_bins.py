"""Live inputs counted in the training profile's bins (serving/profile.py), for input drift.

Every scored row adds one to one bin per profiled feature. Counting happens in memory with numpy (one
vectorised pass for the numeric features, a dict lookup per categorical value), and a background
thread adds the sums to the Prometheus counters once a second, so a 1-row request pays microseconds,
not one multiprocess counter write per feature. Series per version are bounded by the profile
(features x (bins + 2)) and add up across workers and pods, so the operator and PromQL compute the
live share of each bin over any window and compare it with the reference share exported next to it.

Counting never fails a request: a value that cannot be binned counts as missing.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import math
import os
import threading
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt
from mlrollout.serving.model import LoadedModel
from mlrollout.serving.parsing import Batch, Table
from mlrollout.serving.profile import MAX_LABEL_CHARS, FeatureProfile, Profile
from mlrollout.serving.schema import InputSchema
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

BINS = "mlrollout_input_bin"  # counter family; samples end in _total
REFERENCE = "mlrollout_input_reference_share"
PROFILED = "mlrollout_input_profile_features"
FLUSH_SECONDS = 1.0
SMALL_BATCH = 8  # rows up to which pure Python beats numpy's per-call overhead
MAX_PENDING = 100_000  # unflushed batches before a request flushes itself
IDENTITY = ("model", "model_version", "track")


class InputBins:
    """Bins of one model version's profiled features; `observe` per scored batch, `flush` to Prometheus."""

    def __init__(
        self,
        profile: Profile,
        schema: InputSchema,
        identity: dict[str, str],
        registry: CollectorRegistry | Any,
        *,
        flush_seconds: float | None = FLUSH_SECONDS,
    ) -> None:
        features = [f for f in profile.features if f.name in schema.name_set]
        self.features: tuple[FeatureProfile, ...] = tuple(features)
        self.width = max((len(f.labels) for f in features), default=1)
        # Cells (feature * width + bin) of rows not yet flushed: arrays or lists, summed at flush time,
        # so a request only appends (list.append is atomic; the lock guards the swap at flush).
        self._pending: list[Any] = []
        self._lock = threading.Lock()
        counter = Counter(
            BINS, "Scored rows by profiled feature and bin.", (*IDENTITY, "feature", "bin"), registry=registry
        )
        # Every bin's series exists from the first scrape, at 0: a series that first appears with a
        # count loses that count to increase(), which skewed sparse bins into phantom drift.
        self._children: dict[int, Any] = {
            i * self.width + j: counter.labels(**identity, feature=f.name, bin=label)
            for i, f in enumerate(features)
            for j, label in enumerate(f.labels)
        }
        reference = Gauge(
            REFERENCE,
            "Share of training rows per profiled feature and bin (from the version's training profile).",
            (*IDENTITY, "feature", "bin"),
            registry=registry,
            multiprocess_mode="max",
        )
        for f in features:
            for label, share in zip(f.labels, f.reference, strict=True):
                reference.labels(**identity, feature=f.name, bin=label).set(share)
        profiled_gauge(registry, identity).set(len(features))
        # Numeric features: positions in the float matrix Batch.numeric gives, and padded cut points.
        numeric_positions = (
            {p: i for i, p in enumerate(schema.numeric_positions)} if schema.string_positions else None
        )
        self._numeric: list[tuple[int, int, int]] = []  # (feature index, column in the numeric matrix, edges)
        self._categorical: list[tuple[int, int, dict[str, int], int]] = []
        # Small batches (a 1-row request) skip numpy: bisect on the cut points per value.
        self._small: list[tuple[int, int, list[float] | None, dict[str, int], int]] = []
        for i, f in enumerate(features):
            position = schema.positions[f.name]
            if f.kind == "numeric" and not schema.columns[position].is_string:
                column = position if numeric_positions is None else numeric_positions[position]
                self._numeric.append((i, column, len(f.edges)))
                self._small.append((i * self.width, position, list(f.edges), {}, len(f.edges) + 2))
            else:
                index = {c: j for j, c in enumerate(f.categories)} if f.kind == "categorical" else {}
                self._categorical.append((i, position, index, len(f.labels)))
                self._small.append((i * self.width, position, None, index, len(f.labels)))
        edges = np.full((len(self._numeric), max((n for *_, n in self._numeric), default=0)), np.inf)
        for row, (i, _, n) in enumerate(self._numeric):
            edges[row, :n] = features[i].edges
        self._edges = edges
        self._columns = [c for _, c, _ in self._numeric]
        self._numeric_offsets = np.array([i * self.width for i, *_ in self._numeric], dtype=np.int64)
        self._numeric_missing = np.array([n + 1 for *_, n in self._numeric], dtype=np.int64)
        self._flush_seconds = flush_seconds
        self._flusher_pid = 0  # gunicorn loads the app in the master, then forks: one flusher per process

    def observe(self, batch: Batch, schema: InputSchema) -> None:
        try:
            values = batch.values
            cells = self._small_cells(values) if len(values) <= SMALL_BATCH else self._cells(batch, schema)
        except Exception:  # never fail scoring for monitoring; say it once per process
            if not getattr(self, "_warned", False):
                log.exception("input drift counting failed; live input bins are incomplete")
                self._warned = True
            return
        if self._flusher_pid != os.getpid():
            self._start_flusher()
        self._pending.append(cells)
        if len(self._pending) > MAX_PENDING:  # the flusher fell behind: bound the memory
            self.flush()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
            self._pending = []  # counted by the parent process, whose flusher reports them
        if self._flush_seconds is not None:
            _start_flusher(self, self._flush_seconds)

    def _small_cells(self, values: Table) -> list[int]:
        cells: list[int] = []
        for row in values.tolist() if isinstance(values, np.ndarray) else values:
            for base, position, edges, index, size in self._small:
                v = row[position]
                if _absent(v):
                    cells.append(base + size - 1)
                elif edges is not None:
                    cells.append(base + bisect.bisect_right(edges, v))
                else:
                    cells.append(base + index.get(_text(v), size - 2))
        return cells

    def _cells(self, batch: Batch, schema: InputSchema) -> npt.NDArray[np.int64]:
        parts: list[npt.NDArray[np.int64]] = []
        if self._numeric:
            matrix, _ = batch.numeric(schema)
            x = matrix[:, self._columns]
            # searchsorted(side="right") per feature, all features at once: cut points <= x.
            bins = (self._edges[None, :, :] <= x[:, :, None]).sum(axis=2)
            bins = np.where(np.isnan(x), self._numeric_missing[None, :], bins)
            parts.append((bins + self._numeric_offsets[None, :]).ravel().astype(np.int64))
        values = batch.values
        for i, position, index, size in self._categorical:
            other, missing = size - 2, size - 1
            base = i * self.width
            # Strings (the usual case) are looked up as they are; anything else goes through _cell.
            bins = [
                index.get(v, other)
                if type(v) is str and len(v) <= MAX_LABEL_CHARS
                else _cell(v, index, other, missing)
                for v in values[:, position].tolist()
            ]
            parts.append(np.asarray(bins, dtype=np.int64) + base)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in pending])
        counts = np.bincount(flat, minlength=len(self.features) * self.width)
        for cell in np.flatnonzero(counts).tolist():
            self._children[cell].inc(int(counts[cell]))


def input_bins_for(
    model: LoadedModel, registry: CollectorRegistry | Any, identity: dict[str, str]
) -> InputBins | None:
    """The bins of the model's training profile, or None (and the profiled-features gauge at 0)."""
    if model.profile is None:
        profiled_gauge(registry, identity).set(0)
        return None
    return InputBins(model.profile, model.schema, identity, registry)


def profiled_gauge(registry: CollectorRegistry | Any, identity: dict[str, str]) -> Any:
    """Features this version's profile covers (0: no profile logged), so analysis can tell "no
    profile" (Inconclusive with that reason) from "no traffic"."""
    gauge = Gauge(
        PROFILED,
        "Features covered by the served version's training profile (0: none logged).",
        IDENTITY,
        registry=registry,
        multiprocess_mode="max",
    )
    return gauge.labels(**identity)


def _cell(value: Any, index: dict[str, int], other: int, missing: int) -> int:
    return missing if _absent(value) else index.get(_text(value), other)


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    return (value if isinstance(value, str) else str(value))[:MAX_LABEL_CHARS]


def _start_flusher(bins: InputBins, every: float) -> None:
    """A daemon thread per process (gunicorn forks workers after loading: started lazily in each)."""
    ref = weakref.ref(bins)
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            target = ref()
            if target is None:
                return
            target.flush()

    def final() -> None:
        stop.set()
        target = ref()
        if target is not None:
            target.flush()

    threading.Thread(target=run, name="mlrollout-input-bins", daemon=True).start()
    atexit.register(final)

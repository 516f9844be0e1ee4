"""Micro-batching of concurrent requests inside one worker, without a dispatcher thread.

The first request thread to find the model idle becomes the leader: it scores every request queued so
far (up to `max_rows`) in one predict call and hands each its slice. Threads that arrive meanwhile wait
and form the next batch. An idle server adds no delay (a lone request is its own batch); a busy one pays
the estimator's fixed per-call cost once per batch instead of once per request."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]
Result = npt.NDArray[Any]


def batching_pays(setting: bool | None, *, fastpath: bool) -> bool:
    """Whether to micro-batch: as set, or (auto, `setting` None) unless the model scores through a
    verified numpy fast path. Batching trades a thread hand-off (an Event wait and wake, tens of
    microseconds and a GIL switch) for one estimator call per batch; a fast path's call costs a few
    microseconds, so there is nothing to amortise and the hand-offs only add latency. Measured with
    1-row requests from 16 clients (benchmarks/serving/RESULTS.md, 2026-12-03, two runs): forcing it on
    for the fast-path model cost 6-8% of its throughput and 3-12 ms of p99, and 21 us per request in
    process; scikit-learn's own predict (about 0.4 ms per call for a scaler and a linear model) is what
    it is for."""
    return (not fastpath) if setting is None else setting


class _Pending:
    __slots__ = ("done", "error", "result", "wake", "x")

    def __init__(self, x: Matrix) -> None:
        self.x = x
        self.wake = threading.Event()
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    def __init__(self, predict: Callable[[Matrix], Result], max_rows: int = 256, wait_seconds: float = 60.0):
        self._predict = predict
        self._max_rows = max_rows
        self._wait = wait_seconds
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._busy = False
        self.batches = 0  # calls made to the estimator (for tests and tuning)

    def predict(self, x: Matrix) -> Result:
        with self._lock:
            alone = not self._busy and not self._queue
            if alone:
                self._busy = True
                self.batches += 1
            else:
                item = _Pending(x)
                self._queue.append(item)
        if alone:  # the model is idle and nobody waits: score now, no hand-off to set up
            try:
                return self._predict(x)
            finally:
                self._release()
        while True:
            with self._lock:
                if item.done:
                    break
                batch = self._take() if not self._busy else None
            if batch is None:
                if not item.wake.wait(self._wait):
                    raise TimeoutError("prediction did not finish in time")
                item.wake.clear()
                continue
            try:
                self._run(batch)
            finally:
                self._release()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _release(self) -> None:
        with self._lock:
            self._busy = False
            if self._queue:
                self._queue[0].wake.set()  # next in line leads the next batch

    def _take(self) -> list[_Pending]:
        """Called with the lock held: claim the leader role and the queued work, oldest first."""
        self._busy = True
        batch = [self._queue.popleft()]
        rows = len(batch[0].x)
        while self._queue and rows + len(self._queue[0].x) <= self._max_rows:
            item = self._queue.popleft()
            rows += len(item.x)
            batch.append(item)
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        self.batches += 1
        if len(batch) == 1:
            self._score_alone(batch[0])
        else:
            try:
                results = self._predict(np.vstack([p.x for p in batch]))
            except Exception:
                # One bad request must not fail its neighbours: score each alone to find it.
                for item in batch:
                    self._score_alone(item)
                return
            start = 0
            for item in batch:
                end = start + len(item.x)
                self._finish(item, results[start:end], None)
                start = end

    def _score_alone(self, item: _Pending) -> None:
        try:
            self._finish(item, self._predict(item.x), None)
        except Exception as exc:
            self._finish(item, None, exc)

    def _finish(self, item: _Pending, result: Result | None, error: BaseException | None) -> None:
        with self._lock:
            item.result, item.error, item.done = result, error, True
        item.wake.set()

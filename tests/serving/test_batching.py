"""Unit tests of micro-batching: results go back to the right caller, errors stay with their request."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from mlrollout.serving.batching import MicroBatcher, batching_pays


class HeldDouble:
    """Doubles column 0; holds its first call until released so later calls queue into one batch."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.calls:
            self.calls.append(len(x))
            self.release.wait(10)
        else:
            self.calls.append(len(x))
        if (x < 0).any():
            raise ValueError("negative input")
        return x[:, 0] * 2


def wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def run_concurrently(inputs: list[np.ndarray]) -> tuple[HeldDouble, dict[int, object]]:
    model = HeldDouble()
    batcher = MicroBatcher(model, max_rows=100)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = batcher.predict(inputs[i])
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    threads[0].start()
    wait_until(lambda: bool(model.calls))  # the first caller leads and is held inside predict
    for t in threads[1:]:
        t.start()
    wait_until(lambda: len(batcher._queue) == len(inputs) - 1)
    model.release.set()
    for t in threads:
        t.join(10)
    return model, results


def test_concurrent_requests_share_a_batch_and_get_their_own_rows() -> None:
    model, results = run_concurrently([np.array([[float(i)], [i + 0.5]]) for i in range(6)])
    for i in range(6):
        np.testing.assert_array_equal(results[i], [2 * i, 2 * i + 1])
    assert model.calls == [2, 10]  # the five waiting requests went in as one call


def test_a_bad_request_does_not_fail_its_batch_neighbours() -> None:
    inputs = [np.array([[1.0]]), np.array([[2.0]]), np.array([[-1.0]]), np.array([[3.0]])]
    model, results = run_concurrently(inputs)
    assert [np.asarray(results[i]).tolist() for i in (0, 1, 3)] == [[2.0], [4.0], [6.0]]
    assert isinstance(results[2], ValueError)
    assert model.calls == [1, 3, 1, 1, 1]  # batch failed, then each of its requests alone


def test_an_idle_batcher_scores_a_lone_request_directly() -> None:
    model = HeldDouble()
    model.release.set()
    batcher = MicroBatcher(model)
    assert batcher.predict(np.array([[1.0]])).tolist() == [2.0]
    with pytest.raises(ValueError, match="negative"):
        batcher.predict(np.array([[-1.0]]))
    assert batcher.batches == 2


@pytest.mark.parametrize(
    ("setting", "fastpath", "expected"),
    [
        (None, True, False),  # auto: a fast path's call is cheaper than the hand-off batching adds
        (None, False, True),  # auto: scikit-learn's own predict has a per-call cost worth sharing
        (True, True, True),  # forced on
        (False, False, False),  # forced off
    ],
)
def test_auto_batches_only_models_without_a_fast_path(
    setting: bool | None, fastpath: bool, expected: bool
) -> None:
    assert batching_pays(setting, fastpath=fastpath) is expected

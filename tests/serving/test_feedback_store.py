"""Unit tests of the shared prediction store and the F1 computed from a confusion matrix."""

from __future__ import annotations

import os

import pytest
from mlrollout.serving.feedback import (
    InvalidToken,
    PredictionStore,
    PredictionToken,
    StoreLimits,
    macro_f1,
    sign_token,
    token_key,
    verify_token,
)


def test_put_then_take_once() -> None:
    store = PredictionStore(StoreLimits(slots=16, max_rows=4, ttl_seconds=60))
    assert store.put("req-1", [0, 1, 1], now=100.0)
    assert store.take("req-1", now=110.0) == [0, 1, 1]
    assert store.take("req-1", now=110.0) is None  # a label is counted once


def test_expired_and_oversized_and_unknown() -> None:
    store = PredictionStore(StoreLimits(slots=16, max_rows=2, ttl_seconds=60))
    assert store.put("old", [1], now=0.0)
    assert store.take("old", now=61.0) is None
    assert not store.put("big", [0, 1, 0])
    assert store.take("never-seen") is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork needed")
def test_a_forked_worker_sees_what_another_wrote() -> None:
    store = PredictionStore(StoreLimits(slots=64))
    pid = os.fork()
    if pid == 0:  # child: like a gunicorn worker that served the prediction
        store.put("from-child", [2, 0])
        os._exit(0)
    os.waitpid(pid, 0)
    assert store.take("from-child") == [2, 0]


def test_macro_f1_from_confusion_counts() -> None:
    assert macro_f1({}) is None
    assert macro_f1({("1", "1"): 5, ("0", "0"): 5}) == 1.0
    # class 1: tp 3, fp 1, fn 1 -> 0.75; class 0: tp 5, fp 1, fn 1 -> 10/12
    confusion = {("1", "1"): 3, ("1", "0"): 1, ("0", "1"): 1, ("0", "0"): 5}
    assert macro_f1(confusion) == pytest.approx((0.75 + 10 / 12) / 2)


def test_prediction_tokens_round_trip_and_refuse_tampering() -> None:
    key = token_key("churn", None)
    token = PredictionToken("churn", "7", "rid-1", ("yes", "no"))
    text = sign_token(key, token)
    assert verify_token(key, text) == token
    assert verify_token(token_key("churn", None), text) == token  # every pod derives the same key
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(token_key("other-model", None), text)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(token_key("churn", "a configured key"), text)
    head, payload, mac = text.split(".")
    with pytest.raises(InvalidToken):
        verify_token(key, f"{head}.{payload}x.{mac}")
    with pytest.raises(InvalidToken, match="not a prediction token"):
        verify_token(key, "rid-1")

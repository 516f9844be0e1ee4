"""The relay's frame (pure) and the workers' non-blocking hand-off over a real Unix socket."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
from mlrollout.serving.shadow_relay import Copy, RelayClient, decode, encode, relay_argv, sockaddr


def test_a_frame_carries_the_copy_and_numeric_arrays_become_lists() -> None:
    copy = Copy(
        "/invocations",
        b'{"instances": [[1.5, null]]}',
        "application/json",
        "req-1",
        np.array([1, 0], dtype=np.int64),
        np.array([[1.5, np.nan], [2.0, 3.0]]),
        1_700_000_000.25,
    )
    back = decode(encode(copy))
    assert (back.path, back.body, back.content_type, back.request_id, back.at) == (
        copy.path, copy.body, copy.content_type, copy.request_id, copy.at,
    )  # fmt: skip
    assert back.predictions == [1, 0]
    assert back.rows == [[1.5, None], [2.0, 3.0]]  # NaN (a missing value) travels as null


def test_object_arrays_go_through_python_values() -> None:
    labels = np.array(["churn", "stay"], dtype=object)
    rows = np.array([["a", 1.0], ["b", math.nan]], dtype=object)
    back = decode(encode(Copy("/v2/models/m/infer", b"{}", "application/json", "r", labels, rows, 0.0)))
    assert back.predictions == ["churn", "stay"]
    assert back.rows == [["a", 1.0], ["b", None]]


def test_no_rows_unless_recorded() -> None:
    back = decode(encode(Copy("/invocations", b"x", "text/csv", "r", np.array([0.5]), None, 0.0)))
    assert back.rows is None
    assert back.body == b"x"


HEAD = b'["/p", "t", "i", 0, 1, null]'  # predictions 1, not a list


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"\x00\x00", "shorter than its header"),
        (b"\x00\x00\x01\x00[]", "cut short"),
        (b"\x00\x00\x00\x02{}", "that is not"),
        (len(HEAD).to_bytes(4, "big") + HEAD, "without a list of predictions"),
    ],
)
def test_a_malformed_frame_is_refused_with_the_reason(frame: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode(frame)


def test_sockaddr_maps_at_names_to_abstract_sockets() -> None:
    assert sockaddr("@mlrollout-shadow-relay-7") == "\0mlrollout-shadow-relay-7"
    assert sockaddr("/run/relay.sock") == "/run/relay.sock"


def test_relay_argv_carries_no_nul_byte_and_names_the_module() -> None:
    argv = relay_argv("@relay-1", "churn", "3", "stable", ["a", "b"])
    assert argv[1:5] == ["-m", "mlrollout.serving.shadow_relay", "--socket", "@relay-1"]
    assert all("\0" not in arg for arg in argv)


def test_the_client_never_blocks_and_says_when_the_relay_cannot_take_a_frame() -> None:
    name = f"@mlrollout-test-relay-{os.getpid()}"
    client = RelayClient(name)
    assert client.send(b"no relay yet") is False  # nobody bound: refused, not raised
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as relay:
        relay.bind(sockaddr(name))
        sent = 0
        while client.send(b"f" * 1000):  # nobody reads: the socket fills, then send says so
            sent += 1
            assert sent < 100_000, "a Unix datagram socket that never fills"
        assert sent >= 1
        relay.settimeout(1)
        assert relay.recv(2000) == b"f" * 1000

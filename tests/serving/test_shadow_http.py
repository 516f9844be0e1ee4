"""The shadow sender's HTTP client against real sockets: framing, keep-alive, and failures."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from mlrollout.serving.shadow_http import ProtocolError, ShadowConnection

Handler = Callable[[socket.socket, int], None]  # (accepted connection, its index from 0)


@contextmanager
def raw_server(handler: Handler, connections: int = 4) -> Iterator[tuple[int, list[bytes]]]:
    """A listening socket on 127.0.0.1 whose accepted connections `handler` answers byte by byte.
    Yields (port, the requests' head lines as read). Accepts at most `connections`, for 10 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    seen: list[bytes] = []

    def serve() -> None:
        for index in range(connections):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                handler(_Recorder(conn, seen), index)  # type: ignore[arg-type]

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()
        thread.join(timeout=10)


class _Recorder:
    """Wraps an accepted socket: read_request() reads one request and notes its first line."""

    def __init__(self, conn: socket.socket, seen: list[bytes]) -> None:
        self.conn, self.seen, self.buffer = conn, seen, b""

    def read_request(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.conn.recv(65536)
            if not chunk:
                return b""
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length"))
        while len(rest) < length:
            rest += self.conn.recv(65536)
        body, self.buffer = rest[:length], rest[length:]
        self.seen.append(head.split(b"\r\n", 1)[0])
        return body

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


def answer(body: bytes, *, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return version + b" 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


def test_keep_alive_sends_every_request_on_one_connection() -> None:
    def handler(conn: socket.socket, index: int) -> None:
        for _ in range(3):
            body = conn.read_request()  # type: ignore[attr-defined]
            conn.sendall(answer(b'{"echo": %b}' % body))

    with raw_server(handler) as (port, seen):
        client = ShadowConnection("127.0.0.1", port, timeout=5)
        json_type = {"Content-Type": "application/json"}
        bodies = [client.post("/invocations", b"%d" % i, json_type).body for i in range(3)]
        client.close()
    assert bodies == [b'{"echo": 0}', b'{"echo": 1}', b'{"echo": 2}']
    assert seen == [b"POST /invocations HTTP/1.1"] * 3


def test_a_chunked_answer_with_trailers_is_reassembled() -> None:
    def handler(conn: socket.socket, index: int) -> None:
        conn.read_request()  # type: ignore[attr-defined]
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;ext=1\r\n[1, \r\n3\r\n2]\n\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        conn.read_request()  # type: ignore[attr-defined]
        conn.sendall(answer(b"next"))

    with raw_server(handler) as (port, _):
        client = ShadowConnection("127.0.0.1", port, timeout=5)
        first = client.post("/invocations", b"{}", {})
        second = client.post("/invocations", b"{}", {})  # the same connection, framing intact
    assert (first.status, first.body, first.will_close) == (200, b"[1, 2]\n", False)
    assert second.body == b"next"


def test_an_answer_without_length_runs_to_the_close_and_ends_the_connection() -> None:
    def handler(conn: socket.socket, index: int) -> None:
        conn.read_request()  # type: ignore[attr-defined]
        conn.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nbusy")

    with raw_server(handler) as (port, _):
        response = ShadowConnection("127.0.0.1", port, timeout=5).post("/invocations", b"{}", {})
    assert (response.status, response.body, response.will_close) == (503, b"busy", True)


@pytest.mark.parametrize(
    ("extra", "version", "closes"),
    [
        (b"Connection: close\r\n", b"HTTP/1.1", True),
        (b"", b"HTTP/1.0", True),
        (b"Connection: keep-alive\r\n", b"HTTP/1.0", False),
        (b"", b"HTTP/1.1", False),
    ],
)
def test_will_close_follows_the_version_and_connection_header(
    extra: bytes, version: bytes, closes: bool
) -> None:
    def handler(conn: socket.socket, index: int) -> None:
        conn.read_request()  # type: ignore[attr-defined]
        conn.sendall(answer(b"x", extra=extra, version=version))

    with raw_server(handler) as (port, _):
        assert ShadowConnection("127.0.0.1", port, timeout=5).post("/p", b"", {}).will_close is closes


def test_a_connection_the_server_closed_while_idle_is_replaced_once() -> None:
    def handler(conn: socket.socket, index: int) -> None:
        conn.read_request()  # type: ignore[attr-defined]
        conn.sendall(answer(b"conn %d" % index))
        # index 0 then closes while idle, as gunicorn does when its keep-alive runs out

    with raw_server(handler) as (port, seen):
        client = ShadowConnection("127.0.0.1", port, timeout=5)
        assert client.post("/p", b"a", {}).body == b"conn 0"
        threading.Event().wait(0.2)  # the server has closed its end by now
        assert client.post("/p", b"b", {}).body == b"conn 1"
    assert len(seen) == 2  # the second request reached the server once, on the new connection


def test_a_fresh_connection_closed_before_an_answer_is_an_error_not_a_retry() -> None:
    def handler(conn: socket.socket, index: int) -> None:
        conn.read_request()  # type: ignore[attr-defined]  # and close without answering

    with raw_server(handler) as (port, seen):
        client = ShadowConnection("127.0.0.1", port, timeout=5)
        with pytest.raises(ConnectionError, match="closed before a response"):
            client.post("/p", b"a", {})
    assert len(seen) == 1


def test_a_silent_server_times_out() -> None:
    def handler(conn: socket.socket, index: int) -> None:
        conn.read_request()  # type: ignore[attr-defined]
        threading.Event().wait(1.0)

    with raw_server(handler) as (port, _), pytest.raises(TimeoutError):
        ShadowConnection("127.0.0.1", port, timeout=0.2).post("/p", b"a", {})


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "inside the response body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_bytes_that_are_not_a_response_name_the_problem(reply: bytes, problem: str) -> None:
    def handler(conn: socket.socket, index: int) -> None:
        conn.read_request()  # type: ignore[attr-defined]
        conn.sendall(reply)

    with raw_server(handler) as (port, _), pytest.raises(ProtocolError, match=problem):
        ShadowConnection("127.0.0.1", port, timeout=5).post("/p", b"a", {})


def test_a_refused_connection_is_an_os_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connecting is refused
        with pytest.raises(ConnectionRefusedError):
            ShadowConnection("127.0.0.1", port, timeout=5).post("/p", b"a", {})

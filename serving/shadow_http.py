"""The shadow sender's HTTP/1.1 client: one keep-alive connection, one request at a time.

Shadow copies are sent from threads of the stable worker, so every microsecond they hold the
interpreter is a microsecond a user's request may wait for it. `http.client` spends ~0.2 ms of it per
copy (several small writes, headers parsed through `email`); this writes the request as one bytes
object and reads only the status line and the three headers it needs (Content-Length,
Transfer-Encoding, Connection), which keeps a copy to a fraction of that."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024  # a status line and headers longer than this are not an answer
MAX_BODY_BYTES = 64 * 1024 * 1024
RECV_BYTES = 256 * 1024


class ProtocolError(Exception):
    """The peer's bytes are not an HTTP/1.x response (or the connection ended inside one)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    will_close: bool  # the server ends the connection after this response


class ShadowConnection:
    """A keep-alive HTTP/1.1 connection to the shadow. Not thread-safe: one per sender thread.

    Every socket operation has `timeout` seconds (TimeoutError); a refused or reset connection is an
    OSError. A request on a reused connection that the server had already closed while it sat idle
    (its keep-alive ran out) is sent again once on a fresh connection: the server never read it."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._host_header = f"Host: {host}:{port}\r\n".encode("latin-1")
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._served = 0  # responses read on the current socket
        self._answer_started = False  # some bytes of the current response arrived

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer, self._served = None, b"", 0

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        head = [f"POST {path} HTTP/1.1\r\n".encode("latin-1"), self._host_header]
        head.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        head.append(b"Content-Length: %d\r\n\r\n" % len(body))
        request = b"".join(head) + body
        reused = self._served > 0
        try:
            return self._exchange(request)
        except ConnectionError:
            if not reused or self._answer_started:
                raise
        return self._exchange(request)  # the idle connection had been closed by the server

    # ------------------------------------------------------------------ one request, one response
    def _exchange(self, request: bytes) -> Response:
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._sock.sendall(request)
            response = self._read_response()
        except BaseException:
            self.close()
            raise
        self._served += 1
        if response.will_close:
            self.close()
        return response

    def _recv(self) -> bytes:
        assert self._sock is not None
        return self._sock.recv(RECV_BYTES)

    def _read_response(self) -> Response:
        data = bytearray(self._buffer)
        self._answer_started = bool(data)
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > MAX_HEAD_BYTES:
                raise ProtocolError("response headers over 64 KiB")
            chunk = self._recv()
            if not chunk:
                raise ConnectionResetError("connection closed before a response")
            data += chunk
            self._answer_started = True
        status, length, chunked, will_close = _parse_head(bytes(data[:end]))
        rest = data[end + 4 :]
        if chunked:
            body, rest = self._read_chunked(rest)
        elif length is not None:
            if length > MAX_BODY_BYTES:
                raise ProtocolError(f"response body of {length} bytes")
            while len(rest) < length:
                chunk = self._recv()
                if not chunk:
                    raise ProtocolError("connection closed inside the response body")
                rest += chunk
            body, rest = bytes(rest[:length]), rest[length:]
        else:  # no length: the body runs to the end of the connection
            while chunk := self._recv():
                rest += chunk
                if len(rest) > MAX_BODY_BYTES:
                    raise ProtocolError("response body over 64 MiB")
            body, rest, will_close = bytes(rest), bytearray(), True
        self._buffer = bytes(rest)
        return Response(status, body, will_close)

    def _read_chunked(self, data: bytearray) -> tuple[bytes, bytearray]:
        parts: list[bytes] = []
        while True:
            while (line_end := data.find(b"\r\n")) < 0:
                data += self._more()
            size_field = data[:line_end].split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_field[:20]!r}") from None
            data = data[line_end + 2 :]
            if size == 0:
                while (trailer_end := data.find(b"\r\n")) != 0:  # trailers, then an empty line
                    if trailer_end < 0:
                        data += self._more()
                    else:
                        data = data[trailer_end + 2 :]
                return b"".join(parts), data[2:]
            while len(data) < size + 2:
                data += self._more()
            parts.append(bytes(data[:size]))
            data = data[size + 2 :]
            if sum(map(len, parts)) > MAX_BODY_BYTES:
                raise ProtocolError("chunked response body over 64 MiB")

    def _more(self) -> bytes:
        chunk = self._recv()
        if not chunk:
            raise ProtocolError("connection closed inside a chunked body")
        return chunk


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """Status, Content-Length, chunked, will_close from a response's status line and headers."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = False
    connection = b""
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:60]!r}")
        key = name.strip().lower()
        if key == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise ProtocolError(f"bad Content-Length {value.strip()[:20]!r}") from None
        elif key == b"transfer-encoding":
            chunked = value.strip().lower().endswith(b"chunked")
        elif key == b"connection":
            connection = value.strip().lower()
    keep_alive_by_default = parts[0] == b"HTTP/1.1"
    will_close = b"close" in connection or (not keep_alive_by_default and b"keep-alive" not in connection)
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    return status, length, chunked, will_close

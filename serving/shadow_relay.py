"""The shadow relay: one low-priority process per pod that sends the workers' shadow copies.

Under `mlrollout-serve` the workers do not send copies themselves: a sender thread in a worker shares
that worker's interpreter lock with the user's requests, and at 100% shadow every copy costs the
worker more than its own answer's serialization. Instead a worker hands the copy to this process as
one datagram on a Unix socket (a non-blocking `sendto`: a few microseconds; a full socket drops the
copy and counts it `dropped`), and the relay, running at nice 19 (short slices) so that the kernel prefers the
workers whenever both want the CPU, sends, compares and counts with the same code as the threads
(`ShadowMirror`'s send loop, metrics through the multiprocess directory, disagreements in its file).

The gunicorn master starts the relay after loading the model and restarts it if it exits; the relay
ends with the master (parent-death signal, and a parent check every second)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import platform
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt
import orjson

log = logging.getLogger("mlrollout.serving.shadow.relay")
HEADER = struct.Struct("!I")  # length of the JSON header; the request body follows it as is
SEND_BUFFER_BYTES = 4 * 1024 * 1024  # asked for; the kernel caps it at net.core.wmem_max
RESTART_SECONDS = 1.0
READY_SECONDS = 10.0  # how long the master waits for a starting relay to listen
PR_SET_PDEATHSIG = 1


# ------------------------------------------------------------------ the copy and its frame (pure)
@dataclass(frozen=True)
class Copy:
    """One answered scoring request to send to the shadow, with the stable version's answer."""

    path: str
    body: bytes
    content_type: str
    request_id: str
    predictions: list[Any] | npt.NDArray[Any]  # one per row; an array until it crosses a process
    rows: list[list[Any]] | npt.NDArray[Any] | None  # the input rows, only to record them if allowed
    at: float  # when the user's request was answered (epoch seconds)


def encode(copy: Copy) -> bytes:
    """Numeric numpy arrays are written without building Python lists; others through tolist()."""
    fields = [copy.path, copy.content_type, copy.request_id, copy.at, copy.predictions, copy.rows]
    try:
        head = orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:  # object or string dtype
        fields[4:] = [_listed(copy.predictions), _listed(copy.rows)]
        head = orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY)
    return HEADER.pack(len(head)) + head + copy.body


def _listed(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def decode(frame: bytes) -> Copy:
    """The copy in a frame (lists for arrays; NaN became null); ValueError if malformed."""
    if len(frame) < HEADER.size:
        raise ValueError("a shadow frame shorter than its header")
    (size,) = HEADER.unpack_from(frame)
    end = HEADER.size + size
    if end > len(frame):
        raise ValueError("a shadow frame cut short")
    head = orjson.loads(frame[HEADER.size : end])
    if not isinstance(head, list) or len(head) != 6:
        raise ValueError("a shadow frame header that is not [path, type, id, at, predictions, rows]")
    path, content_type, request_id, at, predictions, rows = head
    if not isinstance(predictions, list) or not (rows is None or isinstance(rows, list)):
        raise ValueError("a shadow frame without a list of predictions")
    return Copy(str(path), frame[end:], str(content_type), str(request_id), predictions, rows, float(at))


def sockaddr(address: str) -> str:
    """`@name` is a Linux abstract socket (no file; scoped by the network namespace), else a path."""
    return "\0" + address[1:] if address.startswith("@") else address


# ------------------------------------------------------------------ the workers' side
class RelayClient:
    """Hands frames to the relay without ever blocking. One socket per process (made after fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._address = sockaddr(path)
        self._pid: int | None = None
        self._sock: socket.socket | None = None

    def send(self, frame: bytes) -> bool:
        """True when the relay has the frame; False when it is full, too large, or not running."""
        if self._pid != os.getpid():
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            self._pid = os.getpid()
        assert self._sock is not None
        try:
            self._sock.sendto(frame, self._address)
        except OSError:  # EAGAIN (the relay is behind), EMSGSIZE, ENOENT/ECONNREFUSED (restarting)
            return False
        return True


# ------------------------------------------------------------------ the master's side
class RelaySupervisor:
    """Starts the relay process and keeps it running until stop() (the master's exit)."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self, ready_timeout: float = READY_SECONDS) -> bool:
        """Start the relay and wait until it listens (so the first copies are not dropped while it
        imports); False if it did not say so in time (it keeps starting; copies drop meanwhile)."""
        ready = self._spawn(wait=ready_timeout)
        if not ready:
            log.warning("shadow relay not listening after %.0f s; copies drop until it is", ready_timeout)
        threading.Thread(target=self._watch, name="shadow-relay-watch", daemon=True).start()
        return ready

    def _spawn(self, wait: float = 0.0) -> bool:
        read_end, write_end = os.pipe()
        try:
            with self._lock:
                if self._stopping.is_set():
                    return False
                argv = [*self.argv, "--ready-fd", str(write_end)]
                self._proc = subprocess.Popen(argv, pass_fds=(write_end,))
            os.close(write_end)
            write_end = -1
            if wait <= 0:
                return True
            readable, _, _ = select.select([read_end], [], [], wait)
            return bool(readable) and os.read(read_end, 1) == b"1"
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            with contextlib.suppress(ChildProcessError):  # gunicorn's SIGCHLD handler may reap it
                proc.wait()
            if self._stopping.wait(RESTART_SECONDS):
                return
            log.warning("shadow relay exited (%s); starting it again", proc.returncode)
            self._spawn()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def relay_argv(socket_path: str, model: str, version: str, track: str, columns: Sequence[str]) -> list[str]:
    identity = json.dumps({"model": model, "version": version, "track": track, "columns": list(columns)})
    return [sys.executable, "-m", "mlrollout.serving.shadow_relay", "--socket", socket_path, identity]


# ------------------------------------------------------------------ the relay process
def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class _SchedAttr(ctypes.Structure):
    _fields_ = (  # struct sched_attr, SCHED_ATTR_SIZE_VER0
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    )


SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
RELAY_NICE = 19
RELAY_SLICE_NS = 100_000  # the shortest slice the kernel grants (EEVDF, Linux >= 6.12)


def _yield_to_workers() -> None:
    """The workers first: at nice 19 the relay gets ~1.5% of a CPU a nice-0 worker also wants, so
    copies wait (and drop) rather than users; with a 100 us slice (sched_setattr, Linux >= 6.12) a
    waking worker waits at most that long for a running relay, instead of the default ~3 ms. Not
    SCHED_IDLE: on a busy node that starves the relay for seconds between sending a copy and reading
    its answer, and the shadow is blamed for the timeout (seen on the real node, where nothing else
    was idle). Threads started later inherit both."""
    number = SYS_SCHED_SETATTR.get(platform.machine())
    if number is not None:
        attr = _SchedAttr(ctypes.sizeof(_SchedAttr), 0, 0, RELAY_NICE, 0, RELAY_SLICE_NS, 0, 0)
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syscall(number, 0, ctypes.byref(attr), 0) == 0:
                return
    os.nice(RELAY_NICE)  # an older kernel, another architecture, or a refusing seccomp profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlrollout-shadow-relay", description=__doc__)
    parser.add_argument("--socket", required=True, help="the workers' Unix datagram socket (@name: abstract)")
    parser.add_argument("identity", help='JSON: {"model", "version", "track", "columns"}')
    parser.add_argument("--ready-fd", type=int, help="a pipe to write one byte to once listening")
    args = parser.parse_args(argv)
    parent = os.getppid()
    _die_with_parent()
    _yield_to_workers()
    from mlrollout.serving import logs

    logs.configure(os.environ.get("MLROLLOUT_LOG_LEVEL", "INFO"))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())

    from mlrollout.serving.auth import ApiKeys
    from mlrollout.serving.config import ServingConfig
    from mlrollout.serving.gunicorn_config import gunicorn_options
    from mlrollout.serving.metrics import Identity
    from mlrollout.serving.shadow import build_mirror

    ident = json.loads(args.identity)
    config = ServingConfig.from_env()
    if not config.shadow_config:
        print("mlrollout-shadow-relay: MLROLLOUT_SHADOW_CONFIG is not set", file=sys.stderr)
        return 2
    keys = ApiKeys.from_sources(config.api_keys_file, config.api_keys)
    mirror = build_mirror(
        config,
        Identity(ident["model"], ident["version"], ident["track"]),
        ident["columns"],
        keys.keys[0].decode() if keys.enabled else None,
        workers=gunicorn_options(os.environ)["workers"],  # the relay serves every worker's copies
    )
    address = sockaddr(args.socket)
    if not args.socket.startswith("@"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)  # a previous relay's
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    if args.ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(args.ready_fd, b"1")
            os.close(args.ready_fd)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SEND_BUFFER_BYTES)
    sock.settimeout(1.0)
    buffer = bytearray(SEND_BUFFER_BYTES)
    view = memoryview(buffer)
    mirror.settings  # noqa: B018 - starts the settings poll and the sender threads in this process
    log.info("shadow relay for %s version %s on %s", ident["model"], ident["version"], args.socket)
    try:
        while not stopped.is_set() and os.getppid() == parent:
            try:
                size = sock.recv_into(buffer)
            except (TimeoutError, InterruptedError):
                continue
            try:
                mirror.feed(decode(bytes(view[:size])))
            except (ValueError, TypeError) as exc:
                log.warning("a shadow frame could not be read: %s", exc)
    finally:
        mirror.stop()
        sock.close()
        if not args.socket.startswith("@"):
            with contextlib.suppress(OSError):
                os.unlink(address)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

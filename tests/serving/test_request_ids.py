"""Request ids: unique, 24 hex digits, from the kernel's random bytes, and never shared across a fork."""

from __future__ import annotations

import os
import threading

from mlrollout.serving.request_ids import RequestIds


def test_ids_are_24_hex_digits_and_unique_across_pool_refills_and_threads() -> None:
    ids = RequestIds(per_read=7)  # a small pool: many refills
    seen: list[str] = []

    def take() -> None:
        got = [ids.next() for _ in range(500)]
        seen.extend(got)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(seen) == 2000
    assert len(set(seen)) == 2000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in seen)


def test_a_forked_child_never_issues_the_rest_of_its_parents_pool() -> None:
    ids = RequestIds()
    ids.next()  # the pool is filled: 1,023 ids are left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, ",".join(ids.next() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1 << 16).decode().split(",")
    os.close(read)
    os.waitpid(pid, 0)
    parent = [ids.next() for _ in range(20)]
    assert len(child) == 20
    assert not set(child) & set(parent)

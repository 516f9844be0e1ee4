"""A stopped kopf watcher releases the index-readiness it was holding.

kopf runs no handler until every index is complete: each (resource kind, namespace) watcher holds a
"not listed yet" toggle in the operator-wide `operator_indexed` set until its first listing ends,
and each object's worker holds one until it has indexed the object. kopf 1.45.2 drops those toggles
only on success. A watcher that is stopped before it listed (its namespace was deleted or stopped
matching `--namespace`) or a worker cancelled before it indexed leaves its toggle on for good, and
from then on no handler of that replica runs, in any namespace.

A standby replica hits it every time: its watchers wait unlisted while the peering pauses it, but it
keeps following namespaces, so any served namespace deleted during the pause (with `r-*`-style
patterns, every short-lived one) leaves a toggle behind; after a failover the standby resumed, listed
everything, and handled nothing (the real-node failover test caught it). The toggle stands for "the
indexes of these objects are incomplete"; objects that are no longer served no longer count, so
releasing it when the watcher or worker ends is what kopf means by readiness.

`install()` wraps kopf's `queueing.watcher` and `queueing.worker` (both looked up by name at call
time) and refuses to install on a kopf whose signatures differ, so an upgrade fails loudly in tests.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from kopf._core.reactor import queueing

_WRAPPED = "__mlrollout_releases_index_toggle__"
_PARAMS = ("operator_indexed", "resource_indexed")

AsyncFn = Callable[..., Coroutine[Any, Any, None]]


def releasing(fn: AsyncFn) -> AsyncFn:
    """`fn` (a kopf watcher or worker) with its index toggle dropped whenever it ends."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            await fn(*args, **kwargs)
        finally:
            indexed, toggle = kwargs.get("operator_indexed"), kwargs.get("resource_indexed")
            if indexed is not None and toggle is not None:
                await indexed.drop_toggle(toggle)  # idempotent: a no-op after a normal listing

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def install() -> None:
    for name in ("watcher", "worker"):
        fn = getattr(queueing, name)
        if getattr(fn, _WRAPPED, False):
            continue
        params = inspect.signature(fn).parameters
        missing = [p for p in _PARAMS if p not in params or params[p].kind is not params[p].KEYWORD_ONLY]
        if missing:
            raise RuntimeError(
                f"kopf's queueing.{name} has no keyword-only {missing}: this kopf is not the one "
                "mlrollout.operator.kopf_index_release was written for (1.45.2); re-check the fix"
            )
        setattr(queueing, name, releasing(fn))

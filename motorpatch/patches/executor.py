"""Patches of ``pymongo.periodic_executor`` (``pymongo.synchronous.periodic_executor``
before 4.11): thread joins reachable from green code.

``MongoClient.close()`` -> ``Topology.close()`` joins the SDAM events-executor
thread (``PeriodicExecutor.join(1)``) whenever an SDAM or topology listener is
registered: 0.1 s to 1 s on the loop's thread. In green code the join runs in
the loop's default thread pool and the greenlet parks until it is done;
elsewhere the original joins as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from motorpatch._greenlets import _green_loop
from motorpatch._parking import _park
from motorpatch.patches._registry import Patch

__all__ = ["PATCHES", "in_thread_pool"]


def in_thread_pool(reason: str) -> Callable[..., Any]:
    """A wrapper that, in green code, runs the blocking call in the loop's default thread
    pool and parks (``reason`` for ``stats()``); elsewhere the call runs as it is."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        loop = _green_loop()
        if loop is None:
            return wrapped(*args, **kwargs)
        call = functools.partial(wrapped, *args, **kwargs)
        return _park(loop.run_in_executor(None, call), reason)

    return wrapper


_join = in_thread_pool("thread join")


PATCHES = [
    Patch(
        module,
        "PeriodicExecutor.join",
        wrapper=_join,
        why="client.close() joins the events thread: park instead of blocking the loop",
        since=since,
        until=until,
    )
    for module, since, until in (
        ("pymongo.periodic_executor", (4, 11), None),
        ("pymongo.synchronous.periodic_executor", None, (4, 10)),  # its home before 4.11
    )
]

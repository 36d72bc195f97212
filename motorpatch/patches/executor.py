"""Patches of ``pymongo.periodic_executor`` (``pymongo.synchronous.periodic_executor``
before 4.11): thread joins reachable from green code.

``MongoClient.close()`` -> ``Topology.close()`` joins the SDAM events-executor
thread (``PeriodicExecutor.join(1)``) whenever an SDAM or topology listener is
registered: 0.1 s to 1 s on the loop's thread. In green code the join runs in
the loop's default thread pool and the greenlet parks until it is done;
elsewhere the original joins as before.
"""

from __future__ import annotations

from motorpatch.patches._gates import in_thread_pool
from motorpatch.patches._registry import Patch

__all__ = ["PATCHES"]

_join = in_thread_pool("thread join", method=True)


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

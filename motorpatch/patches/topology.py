"""Patches of ``pymongo.synchronous.topology``: server-selection waits.

``_cond_wait`` (imported by name from ``pymongo.lock``) is where server
selection waits for the monitor threads to report a suitable server. In
green code the wait parks the greenlet; the monitor threads' plain
``notify_all()`` wakes it thread-safely (see :mod:`motorpatch._condition`).
"""

from __future__ import annotations

from motorpatch.patches._registry import Patch
from motorpatch.patches.pool import cond_wait_wrapper

__all__ = ["PATCHES"]

PATCHES = [
    Patch(
        "pymongo.synchronous.topology",
        "_cond_wait",
        wrapper=cond_wait_wrapper,
        why="server selection waits park; monitor threads wake them thread-safely",
    ),
]

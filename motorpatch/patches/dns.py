"""Patches of PyMongo's SRV resolver: ``mongodb+srv://`` SRV and TXT lookups.

``MongoClient`` resolves a ``mongodb+srv://`` URI with dnspython (blocking) on
the calling thread: at construction (``connect=True``) or at the first
operation (``connect=False``). In green code the lookup runs in the loop's
default thread pool and the greenlet parks (reported as ``dns``); elsewhere
(start-up code, PyMongo's SRV polling thread) the original runs. The module
is ``pymongo.srv_resolver`` before 4.12, ``pymongo.synchronous.srv_resolver``
from 4.12.
"""

from __future__ import annotations

from motorpatch.patches._gates import in_thread_pool
from motorpatch.patches._registry import Patch

__all__ = ["PATCHES"]

_resolve = in_thread_pool("dns")


PATCHES = [
    Patch(
        module,
        "_resolve",
        wrapper=_resolve,
        why="mongodb+srv SRV/TXT lookups park instead of blocking the loop",
        since=since,
        until=until,
    )
    for module, since, until in (
        ("pymongo.synchronous.srv_resolver", (4, 12), None),
        ("pymongo.srv_resolver", None, (4, 11)),
    )
]

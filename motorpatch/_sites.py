"""Call sites: which frame of a stack is the user's code, and which is its entry point.

A leaf of the audit's recorder (:mod:`motorpatch._recorder`, which passes
these names on): frames of PyMongo, bson, gridfs, motorpatch, wrapt, greenlet
and the standard library are *internal*; the first frame outside them is the
call site reported. It imports nothing of motorpatch, and on a loop's thread
it makes no file-system call.
"""

from __future__ import annotations

import inspect
import os
import sysconfig
from types import CodeType, FrameType

__all__ = ["Site", "call_site", "entry_point", "site_of"]

_INTERNAL_PACKAGES = ("pymongo", "bson", "gridfs", "motorpatch", "wrapt", "greenlet")
# Computed once at import: on a loop's thread this module makes no file-system calls
# (blockbuster, asyncio debug mode and the audit itself would rightly flag them).
_STDLIB = tuple(
    {
        path + os.sep
        for key in ("stdlib", "platstdlib")
        for path in (sysconfig.get_paths()[key], os.path.realpath(sysconfig.get_paths()[key]))
    }
)
_SITE = ("-packages" + os.sep,)
_internal_code: dict[CodeType, bool] = {}


def _is_internal(frame: FrameType) -> bool:
    code = frame.f_code
    known = _internal_code.get(code)
    if known is not None:
        return known
    name = frame.f_globals.get("__name__") or ""
    internal = name.split(".", 1)[0] in _INTERNAL_PACKAGES
    if not internal:
        path = code.co_filename  # a string test only: no file-system call here
        internal = (path.startswith(_STDLIB) and _SITE[0] not in path) or path.startswith(
            "<frozen "
        )
    _internal_code[code] = internal
    return internal


Site = tuple[str, int, str]  # (file, line, function)


def call_site(frame: FrameType | None) -> tuple[FrameType | None, FrameType | None]:
    """(first user frame from ``frame`` outwards, the last internal frame before it)."""
    outer = None
    while frame is not None and _is_internal(frame):
        outer = frame
        frame = frame.f_back
    return frame, outer


def site_of(frame: FrameType | None) -> Site:
    if frame is None:
        return ("<unknown>", 0, "<unknown>")
    code = frame.f_code
    return (code.co_filename, frame.f_lineno or 0, getattr(code, "co_qualname", code.co_name))


_ASYNC_CODE = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


def entry_point(user: FrameType | None) -> FrameType | None:
    """The outermost synchronous frame that a coroutine (or a loop callback) called.

    For a blocking operation, it is the function to run as green code
    (decorate it with ``@motorpatch.green`` and await it), e.g. a Tornado
    handler's ``get``; None when the operation is called from a coroutine
    directly (move the call into a green function).
    """
    frame, entry = user, None
    while frame is not None and not frame.f_code.co_flags & _ASYNC_CODE:
        if frame.f_code.co_name == "_run" and frame.f_globals.get("__name__") == "asyncio.events":
            break  # a plain loop callback (Handle._run)
        if not _is_internal(frame):
            entry = frame
        frame = frame.f_back
    return entry

"""The blocking-call detector: PyMongo called on a running loop's thread, outside green code.

Such a call blocks the event loop for as long as PyMongo waits on the
network. In ``"warn"`` mode (the default) it emits :class:`BlockingCallWarning`
naming the caller's file and line and lets the call proceed; ``"raise"``
raises :class:`GreenContextError`; ``"ignore"`` does nothing.
"""

from __future__ import annotations

import sys
import warnings
from asyncio import _get_running_loop as _running_loop
from types import FrameType

from motorpatch import _recorder as _record
from motorpatch.bridge import counters
from motorpatch.errors import BlockingCallWarning, GreenContextError

__all__ = ["MODES", "check_blocking", "set_mode"]

MODES = ("warn", "raise", "ignore")
_mode = "warn"

# Frames of these packages are not "the caller": the warning names user code.
_INTERNAL = ("pymongo.", "bson.", "gridfs.", "motorpatch.", "wrapt.", "contextlib")


def set_mode(mode: str) -> None:
    global _mode
    _mode = mode


def _caller() -> FrameType | None:
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_INTERNAL):
        frame = frame.f_back
    return frame


def check_blocking() -> None:
    """Report a PyMongo operation that is about to block a running event loop.

    Call only outside green code. Does nothing when no loop runs on this thread.
    Counts, warns and records (for the audit) once per operation: a
    server-selection wait and then the checkout of the same ``find_one`` are
    one operation.
    """
    if _running_loop() is None or (_mode == "ignore" and not _record.recording):
        return
    if not _record.begin_blocking(sys._getframe(1)) or _mode == "ignore":
        return
    counters().blocking += 1
    frame = _caller()
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "<unknown>"
    message = (
        f"PyMongo was called at {where} on the thread of a running event loop, outside "
        "green code, so it blocks the loop until the server answers. Decorate the "
        "calling function with @motorpatch.green and await it (or run the call in a "
        "thread with loop.run_in_executor)."
    )
    if _mode == "raise":
        _record.discard()  # refused: it never blocks
        raise GreenContextError(message)
    if frame is None:
        warnings.warn(message, BlockingCallWarning, stacklevel=2)
        return
    registry = frame.f_globals.setdefault("__warningregistry__", {})
    warnings.warn_explicit(
        message,
        BlockingCallWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=frame.f_globals.get("__name__"),
        registry=registry,
    )

"""Parking: how green code waits, and how the loop wakes it.

Two ways. ``_park(awaitable)`` switches to the driving coroutine, which
``await``s the awaitable (``await_``, DNS, thread joins). ``_park_direct``
(socket readiness, sleeps, condition wake-ups) arms a ``_Waker`` as the loop
callback: when it fires it switches straight into the greenlet, with no
future and no Task step, subject to the fairness budget; the coroutine hears
only of the call's end or of an awaitable to await (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from asyncio import AbstractEventLoop, BaseEventLoop
from collections.abc import Awaitable
from typing import Any

from greenlet import getcurrent

from motorpatch._fairness import _SLICE_BUDGET, _run_slice, _slice
from motorpatch._greenlets import _Done, _GreenTask
from motorpatch._stats import counters

__all__ = ["_park", "_park_direct", "_sleep", "_waker", "_yield_now"]


def _park(awaitable: Awaitable[Any], reason: str) -> Any:
    """Switch to the driving coroutine, which awaits ``awaitable`` on the loop.

    The caller must be green code (checked by the caller). Returns the result
    or raises the exception of the awaitable; a cancellation of the awaiting
    task arrives here as ``asyncio.CancelledError``. ``reason`` (one of
    ``_stats.REASONS``) is what ``motorpatch.stats()`` reports meanwhile.
    """
    current = getcurrent()
    current.motorpatch_parked = reason
    try:
        return current.parent.switch(awaitable)
    finally:
        current.motorpatch_parked = None


def _sleep(loop: AbstractEventLoop, seconds: float, reason: str) -> None:
    """Park for ``seconds``; at 0, until the callbacks already queued on the loop have run."""
    waker = _waker()
    if seconds > 0:
        handle: asyncio.Handle = loop.call_later(seconds, waker, None)
    else:
        handle = loop.call_soon(waker, None)
    try:
        _park_direct(waker, reason)
    finally:
        handle.cancel()


def _yield_now(loop: AbstractEventLoop) -> None:
    """Let every callback already scheduled on the loop run before continuing."""
    _sleep(loop, 0, "yield")


# -- direct wake-ups -------------------------------------------------------------------
# A socket wait does not go through a future: the loop's reader/writer (or timer)
# callback switches straight into the parked greenlet, and the driving coroutine
# hears of it only when the call ends or needs a real ``await`` (one future per call,
# not one per wait, and no Task step per wait).


class _Resume:
    """A direct wake-up deferred to the driving coroutine (budget spent, or foreign greenlet)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_DIRECT = object()  # switched to the parent: "parked, a loop callback will resume me"


class _Waker:
    """Loop callback that resumes a greenlet parked by ``_park_direct``; one per wait.

    On asyncio's own loops (``BaseEventLoop``: plain asyncio, Tornado) it switches into
    the greenlet from inside the callback. Other loops (uvloop) run I/O and timer
    callbacks from C code that must not see its own registration removed or re-added
    underneath it (the greenlet's next steps do both: a segfault on uvloop proved it), so
    there the switch happens in a callback of its own, queued with ``call_soon``.
    """

    __slots__ = ("fd", "task", "write")

    def __init__(self, task: _GreenTask, fd: int = -1, write: bool = False) -> None:
        self.task = task
        self.fd = fd  # the descriptor it is registered for (reader, or writer), or -1
        self.write = write

    def unregister(self) -> None:
        """Remove its reader (writer) registration, if it still has one."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            loop = self.task.motorpatch_loop
            if self.write:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)

    def __call__(self, value: Any) -> None:
        task = self.task
        if task.motorpatch_waker is not self:
            return  # that wait is over (the other callback won, or it was cancelled)
        loop = task.motorpatch_loop
        if isinstance(loop, BaseEventLoop):
            self._resume(value)
        else:
            loop.call_soon(self._resume, value)

    def _resume(self, value: Any) -> None:
        task = self.task
        if task.motorpatch_waker is not self:
            return  # cancelled meanwhile, or already resumed
        task.motorpatch_waker = None
        if (
            _slice.spent >= _SLICE_BUDGET
            or task.motorpatch_handoff is None
            or getcurrent() is not task.parent
        ):
            # Its descriptor is ready and stays so (level-triggered) until the greenlet
            # reads: unregister now, or it fires again in every iteration until then.
            self.unregister()
            _hand_off(task, _Resume(value))
            return
        try:
            out = _run_slice(counters(), task.switch, value)
        except BaseException as exc:  # the greenlet died outside _green_main's handler
            out = _Done(None, exc)
        if out is not _DIRECT:
            _hand_off(task, out)


def _hand_off(task: _GreenTask, message: Any) -> None:
    """Give the driving coroutine ``message`` (a _Done, a _Resume or an awaitable)."""
    task.motorpatch_message = message
    fut = task.motorpatch_handoff
    if fut is not None and not fut.done():
        fut.set_result(None)


def _waker(fd: int = -1, write: bool = False) -> _Waker:
    """A new waker for the current (green) greenlet's next ``_park_direct``.

    With ``fd``, the caller registers it as that descriptor's reader (writer, with
    ``write``) and removes it with ``unregister()``, which does nothing if the waker
    already did.
    """
    return _Waker(getcurrent(), fd, write)


def _park_direct(
    waker: _Waker, reason: str, timeout: float | None = None, loop: AbstractEventLoop | None = None
) -> Any:
    """Park until ``waker`` is called (it must be armed as a loop callback); return its value.

    With ``timeout`` (and the ``loop``), a timer calls the waker with ``False``
    after that many seconds, and is cancelled on the way out. The caller must
    be green code, and must disarm its own callbacks in a ``finally``.
    """
    handle = None
    if timeout is not None and loop is not None:
        handle = loop.call_later(max(timeout, 0.0), waker, False)
    current = getcurrent()
    current.motorpatch_parked = reason
    current.motorpatch_waker = waker
    try:
        return current.parent.switch(_DIRECT)
    finally:
        current.motorpatch_parked = None
        current.motorpatch_waker = None
        if handle is not None:
            handle.cancel()

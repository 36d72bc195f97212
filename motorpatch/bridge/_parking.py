"""Parking: how green code waits, and how the loop wakes it.

Two ways. :func:`park` switches to the driving coroutine, which ``await``s
the awaitable (``await_``, DNS, thread joins). :func:`park_direct` (socket
readiness, sleeps, condition wake-ups) waits for a :class:`Waker` armed as a
loop callback: when it fires it switches straight into the greenlet, with no
future and no Task step, subject to the fairness budget; the coroutine hears
only of the call's end or of an awaitable to await (the messages are listed
in :mod:`motorpatch.bridge._greenlets`; the measurement behind it is in
docs/architecture.md#direct-wake-ups-and-pooled-greenlets).
"""

from __future__ import annotations

import asyncio
from asyncio import AbstractEventLoop, BaseEventLoop
from collections.abc import Awaitable
from typing import Any

from greenlet import getcurrent

from motorpatch.bridge._fairness import SLICE_BUDGET, budget, run_slice
from motorpatch.bridge._greenlets import PARKED, Deferred, GreenGreenlet, Outcome
from motorpatch.bridge._state import counters

__all__ = ["Waker", "new_waker", "park", "park_direct", "sleep", "yield_now"]


def park(awaitable: Awaitable[Any], reason: str) -> Any:
    """Switch to the driving coroutine, which awaits ``awaitable`` on the loop.

    The caller must be green code (checked by the caller). Returns the result
    or raises the exception of the awaitable; a cancellation of the awaiting
    task arrives here as ``asyncio.CancelledError``. ``reason`` (one of
    ``_state.REASONS``) is what ``motorpatch.stats()`` reports meanwhile.
    """
    current = getcurrent()
    current.motorpatch_parked = reason
    try:
        return current.parent.switch(awaitable)
    finally:
        current.motorpatch_parked = None


def sleep(loop: AbstractEventLoop, seconds: float, reason: str) -> None:
    """Park for ``seconds``; at 0, until the callbacks already queued on the loop have run."""
    waker = new_waker()
    if seconds > 0:
        handle: asyncio.Handle = loop.call_later(seconds, waker, None)
    else:
        handle = loop.call_soon(waker, None)
    try:
        park_direct(waker, reason)
    finally:
        handle.cancel()


def yield_now(loop: AbstractEventLoop) -> None:
    """Let every callback already scheduled on the loop run before continuing."""
    sleep(loop, 0, "yield")


# -- direct wake-ups -------------------------------------------------------------------
# A socket wait does not go through a future: the loop's reader/writer (or timer)
# callback switches straight into the parked greenlet, and the driving coroutine
# hears of it only when the call ends or needs a real ``await`` (one future per call,
# not one per wait, and no Task step per wait).


class Waker:
    """Loop callback that resumes a greenlet parked by :func:`park_direct`; one per wait.

    On asyncio's own loops (``BaseEventLoop``: plain asyncio, Tornado) it switches into
    the greenlet from inside the callback. Other loops (uvloop) run I/O and timer
    callbacks from C code that must not see its own registration removed or re-added
    underneath it (the greenlet's next steps do both: a segfault on uvloop proved it), so
    there the switch happens in a callback of its own, queued with ``call_soon``.
    """

    __slots__ = ("fd", "gl", "write")

    def __init__(self, gl: GreenGreenlet, fd: int = -1, write: bool = False) -> None:
        self.gl = gl
        self.fd = fd  # the descriptor it is registered for (reader, or writer), or -1
        self.write = write

    def unregister(self) -> None:
        """Remove its reader (writer) registration, if it still has one."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            loop = self.gl.motorpatch_loop
            if self.write:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)

    def __call__(self, value: Any) -> None:
        gl = self.gl
        if gl.motorpatch_waker is not self:
            return  # that wait is over (the other callback won, or it was cancelled)
        loop = gl.motorpatch_loop
        if isinstance(loop, BaseEventLoop):
            self._resume(value)
        else:
            loop.call_soon(self._resume, value)

    def _resume(self, value: Any) -> None:
        gl = self.gl
        if gl.motorpatch_waker is not self:
            return  # cancelled meanwhile, or already resumed
        gl.motorpatch_waker = None
        if (
            budget.spent >= SLICE_BUDGET
            or gl.motorpatch_handoff is None
            or getcurrent() is not gl.parent
        ):
            # Its descriptor is ready and stays so (level-triggered) until the greenlet
            # reads: unregister now, or it fires again in every iteration until then
            # (docs/architecture.md#a-deferred-wake-up-unregisters-its-descriptor).
            self.unregister()
            _hand_off(gl, Deferred(value))
            return
        try:
            out = run_slice(counters(), gl.switch, value)
        except BaseException as exc:  # the greenlet died outside _green_main's handler
            out = Outcome(None, exc)
        if out is not PARKED:
            _hand_off(gl, out)


def _hand_off(gl: GreenGreenlet, message: Any) -> None:
    """Give the driving coroutine ``message`` (an Outcome, a Deferred or an awaitable)."""
    gl.motorpatch_message = message
    fut = gl.motorpatch_handoff
    if fut is not None and not fut.done():
        fut.set_result(None)


def new_waker(fd: int = -1, write: bool = False) -> Waker:
    """A new waker for the current (green) greenlet's next :func:`park_direct`.

    With ``fd``, the caller registers it as that descriptor's reader (writer, with
    ``write``) and removes it with :meth:`Waker.unregister`, which does nothing if
    the waker already did.
    """
    return Waker(getcurrent(), fd, write)


def park_direct(waker: Waker, reason: str, timeout: float | None = None) -> Any:
    """Park until ``waker`` is called (it must be armed as a loop callback); return its value.

    With ``timeout``, a timer on the greenlet's loop calls the waker with
    ``False`` after that many seconds, and is cancelled on the way out. The
    caller must be green code, and must disarm its own callbacks in a ``finally``.
    """
    current = getcurrent()
    handle = None
    if timeout is not None:
        handle = current.motorpatch_loop.call_later(max(timeout, 0.0), waker, False)
    current.motorpatch_parked = reason
    current.motorpatch_waker = waker
    try:
        return current.parent.switch(PARKED)
    finally:
        current.motorpatch_parked = None
        current.motorpatch_waker = None
        if handle is not None:
            handle.cancel()

"""Green waits on a ``threading.Condition`` that any thread or greenlet can wake.

PyMongo's pool (maxPoolSize, maxConnecting) and topology (server selection)
wait on ``threading.Condition`` objects that are notified by other greenlets,
plain threads and the monitor threads. A green wait places a waiter object
in the condition's own waiter list; ``Condition.notify()`` calls its
``release()``, which queues the greenlet's wake-up on its loop (``call_soon``
from the loop's own thread, ``call_soon_threadsafe`` from any other). So a
plain ``notify()`` from any thread wakes a parked greenlet, and the loop
thread never blocks in ``Condition.wait``.

On timeout or cancellation the waiter re-acquires the lock as ``wait()``
does, leaves the list, and hands on a wake-up it received but will not use.
"""

from __future__ import annotations

import contextlib
import threading
from asyncio import AbstractEventLoop

from motorpatch._parking import _park_direct, _Waker, _waker

__all__ = ["green_cond_wait", "pending_handoffs"]


class _GreenWaiter:
    """Stands in a Condition's waiter list for a parked greenlet."""

    __slots__ = ("_condition", "_loop", "_thread", "_waker", "notified")

    def __init__(
        self, loop: AbstractEventLoop, waker: _Waker, condition: threading.Condition
    ) -> None:
        self._loop = loop
        self._waker = waker
        self._thread = threading.get_ident()  # the loop's
        self._condition = condition
        self.notified = False

    def release(self) -> None:
        # Called by Condition.notify() with the condition's lock held.
        if self.notified:
            raise RuntimeError("release unlocked lock")  # what a lock would say
        self.notified = True
        try:
            if threading.get_ident() == self._thread:  # no need to wake the loop's selector
                self._loop.call_soon(self._waker, True)
            else:
                self._loop.call_soon_threadsafe(self._waker, True)
        except RuntimeError:  # a closed loop: nothing is parked there any more
            return
        # Until the woken greenlet runs, what it was woken for is its own.
        _add_handoffs(self._condition, 1)


_HANDOFFS = "motorpatch_handoffs"


def _add_handoffs(condition: threading.Condition, n: int) -> None:
    setattr(condition, _HANDOFFS, getattr(condition, _HANDOFFS, 0) + n)


def pending_handoffs(condition: threading.Condition) -> int:
    """Green waiters notified on ``condition`` that have not run yet."""
    return int(getattr(condition, _HANDOFFS, 0))


def green_cond_wait(
    loop: AbstractEventLoop,
    condition: threading.Condition,
    timeout: float | None,
    reason: str = "pool wait",
) -> bool:
    """Wait on ``condition`` (its lock held) by parking; True if notified, as ``wait()``."""
    if not condition._is_owned():  # type: ignore[attr-defined]
        raise RuntimeError("cannot wait on un-acquired lock")
    waker = _waker()
    waiter = _GreenWaiter(loop, waker, condition)
    condition._waiters.append(waiter)  # type: ignore[attr-defined]
    saved = condition._release_save()  # type: ignore[attr-defined]
    finished = False
    try:
        if timeout is None or timeout > 0:
            _park_direct(waker, reason, timeout, loop)
        finished = True
    finally:
        condition._acquire_restore(saved)  # type: ignore[attr-defined]
        if not waiter.notified:
            with contextlib.suppress(ValueError):  # timed out: leave the waiter list
                condition._waiters.remove(waiter)  # type: ignore[attr-defined]
        else:
            _add_handoffs(condition, -1)  # this greenlet runs now: the hand-off is done
            if not finished:
                condition.notify()  # cancelled after being chosen: pass the wake-up on
    return waiter.notified

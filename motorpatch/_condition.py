"""Green waits on a ``threading.Condition`` that any thread or greenlet can wake.

PyMongo's pool (maxPoolSize, maxConnecting) and topology (server selection)
wait on ``threading.Condition`` objects that are notified by other greenlets,
plain threads and the monitor threads. A green wait places a waiter object
in the condition's own waiter list; ``Condition.notify()`` calls its
``release()``, which resolves a future on the waiting greenlet's loop through
``call_soon_threadsafe``. So a plain ``notify()`` from any thread wakes a
parked greenlet, and the loop thread never blocks in ``Condition.wait``.

On timeout or cancellation the waiter re-acquires the lock as ``wait()``
does, leaves the list, and hands on a wake-up it received but will not use.
"""

from __future__ import annotations

import contextlib
import threading
from asyncio import AbstractEventLoop, Future
from typing import Any

from motorpatch._bridge import _park_until, _wake

__all__ = ["green_cond_wait"]


class _GreenWaiter:
    """Stands in a Condition's waiter list for a parked greenlet."""

    __slots__ = ("_fut", "_loop", "notified")

    def __init__(self, loop: AbstractEventLoop, fut: Future[Any]) -> None:
        self._loop = loop
        self._fut = fut
        self.notified = False

    def release(self) -> None:
        # Called by Condition.notify() with the condition's lock held.
        if self.notified:
            raise RuntimeError("release unlocked lock")  # what a lock would say
        self.notified = True
        # A closed loop raises RuntimeError: nothing is parked there any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_wake, self._fut, True)


def green_cond_wait(
    loop: AbstractEventLoop, condition: threading.Condition, timeout: float | None
) -> bool:
    """Wait on ``condition`` (its lock held) by parking; True if notified, as ``wait()``."""
    if not condition._is_owned():  # type: ignore[attr-defined]
        raise RuntimeError("cannot wait on un-acquired lock")
    fut = loop.create_future()
    waiter = _GreenWaiter(loop, fut)
    condition._waiters.append(waiter)  # type: ignore[attr-defined]
    saved = condition._release_save()  # type: ignore[attr-defined]
    finished = False
    try:
        if timeout is None or timeout > 0:
            _park_until(loop, fut, timeout)
        finished = True
    finally:
        condition._acquire_restore(saved)  # type: ignore[attr-defined]
        if not waiter.notified:
            with contextlib.suppress(ValueError):  # timed out: leave the waiter list
                condition._waiters.remove(waiter)  # type: ignore[attr-defined]
        elif not finished:
            condition.notify()  # cancelled after being chosen: pass the wake-up on
    return waiter.notified

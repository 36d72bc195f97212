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
A waiter whose loop has closed refuses the wake-up (``release()`` raises
``RuntimeError``, which ``notify()`` skips since CPython 3.11's gh-92530
fix), so ``notify()`` wakes the next waiter instead and none is lost.

Between ``notify()`` and the moment its greenlet runs, a green waiter is a
*hand-off*: what it was woken for (a pool slot) is promised to it.
``pending_handoffs`` counts them, so the pool patch can make newcomers queue
behind them instead of taking the slot first.
"""

from __future__ import annotations

import contextlib
import threading
from asyncio import AbstractEventLoop
from typing import Any

from motorpatch.bridge._parking import Waker, new_waker, park_direct, sleep

__all__ = ["green_cond_wait", "hold", "pending_handoffs", "unhold"]


class _GreenWaiter:
    """Stands in a Condition's waiter list for a parked greenlet."""

    __slots__ = ("_condition", "_loop", "_thread", "_waker", "notified")

    def __init__(
        self, loop: AbstractEventLoop, waker: Waker, condition: threading.Condition
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
        try:
            if threading.get_ident() == self._thread:  # no need to wake the loop's selector
                self._loop.call_soon(self._waker, True)
            else:
                self._loop.call_soon_threadsafe(self._waker, True)
        except RuntimeError:
            # A closed loop: nothing parked there will run. Raising makes notify()
            # skip this waiter and wake the next one, so the wake-up is not lost.
            raise RuntimeError("the waiter's event loop is closed") from None
        self.notified = True
        # Until the woken greenlet runs, what it was woken for is its own. (A waiter
        # notified just before its loop closed never runs: drop those here, under the
        # lock, so what was promised to them is not held back from the others.)
        handoffs = _handoffs(self._condition)
        for closed in [loop for loop in handoffs if loop.is_closed()]:
            del handoffs[closed]
        handoffs.setdefault(self._loop, []).append(self)


_HANDOFFS = "motorpatch_handoffs"


def _handoffs(condition: threading.Condition) -> dict[AbstractEventLoop, list[Any]]:
    """The green waiters notified on ``condition`` whose greenlets have not run yet, per loop.

    Kept per loop so that counting them costs one ``is_closed()`` per loop, not per
    waiter: at 1,000 callers hundreds can be pending at once.
    """
    waiters: dict[AbstractEventLoop, list[Any]] | None = getattr(condition, _HANDOFFS, None)
    if waiters is None:
        waiters = {}
        setattr(condition, _HANDOFFS, waiters)
    return waiters


def _drop(condition: threading.Condition, waiter: Any) -> None:
    """``waiter``'s greenlet runs now (or gives its hand-off up): no longer pending."""
    waiters = _handoffs(condition)
    mine = waiters.get(waiter._loop)
    if mine is not None:
        with contextlib.suppress(ValueError):
            mine.remove(waiter)
        if not mine:
            del waiters[waiter._loop]


def pending_handoffs(condition: threading.Condition) -> int:
    """Green waiters notified on ``condition`` that have not run yet (on open loops)."""
    waiters: dict[AbstractEventLoop, list[Any]] | None = getattr(condition, _HANDOFFS, None)
    if not waiters:
        return 0
    return sum(len(w) for loop, w in waiters.items() if not loop.is_closed())


_PLAIN_LOCK = type(threading.Lock())


def _reacquire(loop: AbstractEventLoop, condition: threading.Condition, saved: object) -> None:
    """Take the condition's lock back as ``wait()`` does, but without blocking the loop.

    A woken waiter usually finds the lock held by the thread that notified it (a
    monitor thread in ``notify_all()``): the loop gets its turns until it is free,
    instead of its thread blocking in ``acquire()`` (which blockbuster rightly
    reports). An RLock (state to restore), or a loop that no longer runs, takes the
    plain blocking path.
    """
    lock = condition._lock  # type: ignore[attr-defined]
    if type(lock) is _PLAIN_LOCK and loop.is_running() and not loop.is_closed():
        tries = 0
        try:
            while not lock.acquire(False):
                tries += 1  # held for microseconds as a rule; past a few turns, back off
                sleep(loop, 0.001 if tries > 10 else 0, "yield")
        except BaseException:  # cancelled meanwhile: take it the blocking way, then unwind
            lock.acquire()
            raise
        return
    condition._acquire_restore(saved)  # type: ignore[attr-defined]


def green_cond_wait(
    loop: AbstractEventLoop,
    condition: threading.Condition,
    timeout: float | None,
    reason: str = "pool wait",
) -> bool:
    """Wait on ``condition`` (its lock held) by parking; True if notified, as ``wait()``."""
    if not condition._is_owned():  # type: ignore[attr-defined]
        raise RuntimeError("cannot wait on un-acquired lock")
    waker = new_waker()
    waiter = _GreenWaiter(loop, waker, condition)
    condition._waiters.append(waiter)  # type: ignore[attr-defined]
    saved = condition._release_save()  # type: ignore[attr-defined]
    finished = False
    try:
        if timeout is None or timeout > 0:
            park_direct(waker, reason, timeout)
        finished = True
    finally:
        _reacquire(loop, condition, saved)
        if not waiter.notified:
            with contextlib.suppress(ValueError):  # timed out: leave the waiter list
                condition._waiters.remove(waiter)  # type: ignore[attr-defined]
        else:
            _drop(condition, waiter)  # this greenlet runs now: hand-off done
            if not finished:
                condition.notify()  # cancelled after being chosen: pass the wake-up on
    return waiter.notified


class _Held:
    """A hand-off kept by a greenlet that runs but has not used it yet (see ``hold``)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: AbstractEventLoop) -> None:
        self._loop = loop


def hold(condition: threading.Condition, loop: AbstractEventLoop) -> object:
    """Count one more hand-off on ``condition`` (its lock held) until ``unhold``.

    For a greenlet that was handed what ``condition`` guards, must wait for
    something else before it takes it, and must not see it taken meanwhile.
    """
    held = _Held(loop)
    _handoffs(condition).setdefault(loop, []).append(held)
    return held


def unhold(condition: threading.Condition, held: object) -> None:
    """End ``hold`` (the condition's lock held)."""
    _drop(condition, held)

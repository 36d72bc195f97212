"""Green greenlets, and the protocol by which one talks to the coroutine that drives it.

A :class:`GreenGreenlet` is a greenlet tagged with the loop that drives it;
"am I in green code, and on which loop?" (:func:`green_loop`) is one
attribute lookup on ``greenlet.getcurrent()`` plus a check that that loop is
the one running on this thread (which also makes a forked child, where no
loop runs, fall back to plain blocking behaviour). Finished greenlets wait in
a per-thread pool for the next call (:func:`take_greenlet`/:func:`finish`);
:func:`unfinished_on_open_loops` lists the busy ones for ``stats()`` and
``uninstall()``.

The switch protocol. A green call is one coroutine (``_green._drive``, "the
driver") and one greenlet. These are the only messages between them:

    message        sent by                          the driver then
    -------------  -------------------------------  ----------------------------------------
    Outcome        the greenlet, switching to the   returns ``value`` or raises ``exc``: the
                   driver when the call's function  call is over and the greenlet goes back
                   returns or raises                to the pool (``finish``)
    an awaitable   the greenlet (``park``)          awaits it on the loop, then switches the
                                                    result in (or throws the exception in,
                                                    cancellation included)
    PARKED         the greenlet (``park_direct``):  awaits ``motorpatch_handoff``, the call's
                   "a loop callback (the waker)     one hand-off future, which a waker
                   will switch me back in"          completes only to pass a message below
    Deferred       a waker, when it may not switch  switches ``value`` in itself, after the
                   in itself (budget spent, or not  next loop iteration if the fairness
                   called from the driver's         budget is spent
                   greenlet)
    Outcome or     a waker, when the greenlet it    as above
    an awaitable   switched in finished or parked
                   on an awaitable

A waker passes its message in ``motorpatch_message`` and completes
``motorpatch_handoff``; the greenlet passes its message as the value of
``parent.switch()``.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from asyncio import AbstractEventLoop, Future
from asyncio import _get_running_loop as _running_loop
from collections.abc import Callable
from typing import Any, cast

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _greenlet

__all__ = [
    "LOOP_ATTR",
    "PARKED",
    "Deferred",
    "GreenGreenlet",
    "Outcome",
    "abandoned_on_closed_loops",
    "finish",
    "green_loop",
    "recycle",
    "take_greenlet",
    "unfinished_on_open_loops",
]

LOOP_ATTR = "motorpatch_loop"  # the tag: set on green greenlets only


class GreenGreenlet(_greenlet):  # type: ignore[misc]
    """A greenlet running green code; tagged with the loop that drives it."""

    motorpatch_loop: AbstractEventLoop
    motorpatch_parked: str | None  # why it waits now (see _state.REASONS), None if running
    motorpatch_busy: bool  # running a call (False while idle in the pool)
    motorpatch_waker: Callable[[Any], None] | None  # the armed wake-up of a direct park
    motorpatch_handoff: Future[None] | None  # what the driving coroutine awaits meanwhile
    motorpatch_message: Any  # what a wake-up handed to the driving coroutine
    motorpatch_fn: Callable[..., Any] | None  # the green function of the current call

    def __init__(self, run: Callable[..., Any], parent: _greenlet, loop: AbstractEventLoop):
        super().__init__(run, parent)
        self.motorpatch_loop = loop
        self.motorpatch_parked = None
        self.motorpatch_busy = False
        self.motorpatch_waker = None
        self.motorpatch_handoff = None
        self.motorpatch_message = None
        self.motorpatch_fn = None


def green_loop() -> AbstractEventLoop | None:
    """Return the running loop if the caller is green code driven by it, else None."""
    loop = getattr(getcurrent(), LOOP_ATTR, None)
    if loop is not None and loop is _running_loop():
        return cast(AbstractEventLoop, loop)
    return None


# Every green greenlet not yet collected, for uninstall()'s check (weak: no leak).
_live: weakref.WeakSet[GreenGreenlet] = weakref.WeakSet()
_live_lock = threading.Lock()


def abandoned_on_closed_loops() -> list[GreenGreenlet]:
    """Green calls started and not finished whose loop is closed: parked there for good."""
    with _live_lock:
        every = list(_live)
    return [
        gl for gl in every if gl.motorpatch_busy and not gl.dead and gl.motorpatch_loop.is_closed()
    ]


def unfinished_on_open_loops() -> list[GreenGreenlet]:
    """Green calls started and not finished whose loop is not closed (any thread)."""
    with _live_lock:
        every = list(_live)
    return [
        gl
        for gl in every
        if gl.motorpatch_busy and not gl.dead and not gl.motorpatch_loop.is_closed()
    ]


# -- reused greenlets ------------------------------------------------------------------
# Creating and freeing a greenlet costs about as much as a park, so a finished one
# waits in its thread's pool for the next call
# (docs/architecture.md#direct-wake-ups-and-pooled-greenlets).
_POOL_MAX = 1024


class _Pool(threading.local):
    idle: list[GreenGreenlet]

    def __init__(self) -> None:
        self.idle = []


_pool = _Pool()


def _green_main(job: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> Outcome:
    """Body of every green greenlet: run jobs, hand back each outcome, wait for the next.

    Holds no reference to itself (a suspended greenlet in a reference cycle is
    never collected) and none to a finished call's values (``finish`` empties
    the outcome). Ends, returning the outcome, when the pool has no room for it.
    """
    while True:
        fn, args, kwargs = job
        del job
        try:
            outcome = Outcome(fn(*args, **kwargs), None)
        except GreenletExit:
            raise  # killed (collected while suspended): die
        except BaseException as exc:  # handed to the awaiter, who raises it
            outcome = Outcome(None, exc)
        del fn, args, kwargs
        if len(_pool.idle) >= _POOL_MAX:
            return outcome
        job = getcurrent().parent.switch(outcome)


def take_greenlet(loop: AbstractEventLoop) -> GreenGreenlet:
    """An idle pooled greenlet ready for a call on ``loop`` (or a new one)."""
    here = getcurrent()
    idle = _pool.idle
    gl = idle.pop() if idle else None
    if gl is None or gl.parent is not here:
        gl = GreenGreenlet(_green_main, here, loop)
        with _live_lock:
            _live.add(gl)
    gl.motorpatch_loop = loop
    gl.motorpatch_busy = True
    # A copy of the caller's context, as asyncio gives each task.
    gl.gr_context = contextvars.copy_context()
    return gl


def recycle(gl: GreenGreenlet) -> None:
    """Mark ``gl`` idle and put it back in this thread's pool (if alive and there is room)."""
    gl.motorpatch_busy = False
    gl.motorpatch_fn = None
    if not gl.dead and len(_pool.idle) < _POOL_MAX:
        gl.gr_context = None  # do not keep the caller's context values alive
        _pool.idle.append(gl)


class Outcome:
    """A green call's outcome (its value, or its exception), handed to the driver."""

    __slots__ = ("exc", "value")

    def __init__(self, value: Any, exc: BaseException | None) -> None:
        self.value = value
        self.exc = exc


def finish(gl: GreenGreenlet, value: Any) -> Any:
    """Return the value of (or raise the exception from) a finished call; recycle its greenlet."""
    recycle(gl)
    if type(value) is not Outcome:
        return value  # the greenlet died on its own (GreenletExit): its last value
    result, exc = value.value, value.exc
    value.value = value.exc = None  # the idle greenlet still refers to this outcome
    if exc is not None:
        try:
            raise exc
        finally:
            del exc
    return result


class Deferred:
    """A wake-up the waker could not switch in itself, handed to the driver to switch in."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Parked:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PARKED"


PARKED: Any = _Parked()  # "parked; a loop callback (the waker) will switch me back in"

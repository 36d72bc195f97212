"""Green greenlets: what they are, how calls find one, and which are in flight.

A ``_GreenTask`` is a greenlet tagged with the loop that drives it; "am I in
green code, and on which loop?" (``_green_loop``) is one attribute lookup on
``greenlet.getcurrent()`` plus a check that that loop is the one running on
this thread (which also makes a forked child, where no loop runs, fall back
to plain blocking behaviour). Finished greenlets wait in a per-thread pool
for the next call (``_take_task``/``_finish``); ``unfinished_on_open_loops``
lists the busy ones for ``stats()`` and ``uninstall()``.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from asyncio import AbstractEventLoop, Future
from asyncio import _get_running_loop as _running_loop
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _greenlet

if TYPE_CHECKING:
    from motorpatch._parking import _Waker

__all__ = ["_GreenTask", "_green_loop", "unfinished_on_open_loops"]

_LOOP_ATTR = "motorpatch_loop"


class _GreenTask(_greenlet):  # type: ignore[misc]
    """A greenlet running green code; tagged with the loop that drives it."""

    motorpatch_loop: AbstractEventLoop
    motorpatch_parked: str | None  # why it waits now (see _stats.REASONS), None if running
    motorpatch_busy: bool  # running a call (False while idle in the pool)
    motorpatch_waker: _Waker | None  # the armed wake-up of a direct park
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


def _green_loop() -> AbstractEventLoop | None:
    """Return the running loop if the caller is green code driven by it, else None."""
    loop = getattr(getcurrent(), _LOOP_ATTR, None)
    if loop is not None and loop is _running_loop():
        return cast(AbstractEventLoop, loop)
    return None


# Every green greenlet not yet collected, for uninstall()'s check (weak: no leak).
_live: weakref.WeakSet[_GreenTask] = weakref.WeakSet()
_live_lock = threading.Lock()


def unfinished_on_open_loops() -> list[_GreenTask]:
    """Green calls started and not finished whose loop is not closed (any thread)."""
    with _live_lock:
        tasks = list(_live)
    return [
        t for t in tasks if t.motorpatch_busy and not t.dead and not t.motorpatch_loop.is_closed()
    ]


# -- reused greenlets ------------------------------------------------------------------
# Creating and freeing a greenlet costs about as much as a park, so a finished one
# waits in its thread's pool for the next call (docs/architecture.md, "Decisions").
_POOL_MAX = 1024


class _Pool(threading.local):
    idle: list[_GreenTask]

    def __init__(self) -> None:
        self.idle = []


_pool = _Pool()


def _green_main(job: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> _Done:
    """Body of every green greenlet: run jobs, hand back each outcome, wait for the next.

    Holds no reference to itself (a suspended greenlet in a reference cycle is
    never collected) and none to a finished call's values (``_finish`` empties
    the outcome). Ends, returning the outcome, when the pool has no room for it.
    """
    while True:
        fn, args, kwargs = job
        del job
        try:
            outcome = _Done(fn(*args, **kwargs), None)
        except GreenletExit:
            raise  # killed (collected while suspended): die
        except BaseException as exc:  # handed to the awaiter, who raises it
            outcome = _Done(None, exc)
        del fn, args, kwargs
        if len(_pool.idle) >= _POOL_MAX:
            return outcome
        job = getcurrent().parent.switch(outcome)


def _take_task(loop: AbstractEventLoop) -> _GreenTask:
    """An idle pooled greenlet ready for a call on ``loop`` (or a new one)."""
    here = getcurrent()
    idle = _pool.idle
    task = idle.pop() if idle else None
    if task is None or task.parent is not here:
        task = _GreenTask(_green_main, here, loop)
        with _live_lock:
            _live.add(task)
    task.motorpatch_loop = loop
    task.motorpatch_busy = True
    # A copy of the caller's context, as asyncio gives each task.
    task.gr_context = contextvars.copy_context()
    return task


def _recycle(task: _GreenTask) -> None:
    task.motorpatch_busy = False
    task.motorpatch_fn = None
    if not task.dead and len(_pool.idle) < _POOL_MAX:
        task.gr_context = None  # do not keep the caller's context values alive
        _pool.idle.append(task)


class _Done:
    """A green call's outcome, handed from its greenlet to its driving coroutine."""

    __slots__ = ("exc", "value")

    def __init__(self, value: Any, exc: BaseException | None) -> None:
        self.value = value
        self.exc = exc


def _finish(task: _GreenTask, value: Any) -> Any:
    """Return the value of (or raise the exception from) a finished call; recycle its greenlet."""
    _recycle(task)
    if type(value) is not _Done:
        return value  # the greenlet died on its own (GreenletExit): its last value
    result, exc = value.value, value.exc
    value.value = value.exc = None  # the idle greenlet still refers to this outcome
    if exc is not None:
        try:
            raise exc
        finally:
            del exc
    return result

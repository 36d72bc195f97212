"""The greenlet <-> event loop bridge: ``green``, ``await_`` and parking.

A green call is a coroutine (``_drive``) that owns one greenlet (taken from
a per-thread pool) for the call. The greenlet runs the user's synchronous
function; whenever that code must ``await_`` an awaitable, it switches back
to the coroutine with it, the coroutine ``await``s it on the loop and
switches the result (or throws the exception) back in. This is the shape of
SQLAlchemy's ``greenlet_spawn``/``await_only``: because a real coroutine does
the awaiting, asyncio cancellation, ``asyncio.wait_for``, Tornado and
contextvars all behave as they do for ordinary coroutines. The hot waits
(socket readiness, timers, condition wake-ups) skip the future: the loop's
callback switches straight into the greenlet (``_park_direct``), and the
coroutine hears only of the call's end, or of an awaitable to await.

Green greenlets are *tagged*, not tracked: "am I in green code, and on which
loop?" is one attribute lookup on ``greenlet.getcurrent()`` plus a check that
that loop is the one running on this thread (which also makes a forked
child, where no loop runs, fall back to plain blocking behaviour).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
import warnings
import weakref
from asyncio import AbstractEventLoop, Future
from asyncio import _get_running_loop as _running_loop
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _greenlet

from motorpatch._fairness import _SLICE_BUDGET, _run_slice, _slice, _wait_for_next_slice
from motorpatch._stats import counters
from motorpatch.errors import BlockingCallWarning, GreenContextError

__all__ = ["await_", "green"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_LOOP_ATTR = "motorpatch_loop"


class _GreenTask(_greenlet):  # type: ignore[misc]
    """A greenlet running green code; tagged with the loop that drives it."""

    motorpatch_loop: AbstractEventLoop
    motorpatch_parked: str | None  # why it waits now (see _stats.REASONS), None if running
    motorpatch_busy: bool  # running a call (False while idle in the pool)
    motorpatch_waker: _Waker | None  # the armed wake-up of a direct park
    motorpatch_handoff: Future[None] | None  # what the driving coroutine awaits meanwhile
    motorpatch_message: Any  # what a wake-up handed to the driving coroutine

    def __init__(self, run: Callable[..., Any], parent: _greenlet, loop: AbstractEventLoop):
        super().__init__(run, parent)
        self.motorpatch_loop = loop
        self.motorpatch_parked = None
        self.motorpatch_busy = False
        self.motorpatch_waker = None
        self.motorpatch_handoff = None
        self.motorpatch_message = None


def _green_loop() -> AbstractEventLoop | None:
    """Return the running loop if the caller is green code driven by it, else None."""
    loop = getattr(getcurrent(), _LOOP_ATTR, None)
    if loop is not None and loop is _running_loop():
        return cast(AbstractEventLoop, loop)
    return None


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
    if not task.dead and len(_pool.idle) < _POOL_MAX:
        task.gr_context = None  # do not keep the caller's context values alive
        _pool.idle.append(task)


# -- direct wake-ups -------------------------------------------------------------------
# A socket wait does not go through a future: the loop's reader/writer (or timer)
# callback switches straight into the parked greenlet, and the driving coroutine
# hears of it only when the call ends or needs a real ``await`` (one future per call,
# not one per wait, and no Task step per wait).


class _Done:
    """A green call's outcome, handed from its greenlet to its driving coroutine."""

    __slots__ = ("exc", "value")

    def __init__(self, value: Any, exc: BaseException | None) -> None:
        self.value = value
        self.exc = exc


class _Resume:
    """A direct wake-up deferred to the driving coroutine (budget spent, or foreign greenlet)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_DIRECT = object()  # switched to the parent: "parked, a loop callback will resume me"


class _Waker:
    """Loop callback that resumes a greenlet parked by ``_park_direct``; one per wait."""

    __slots__ = ("task",)

    def __init__(self, task: _GreenTask) -> None:
        self.task = task

    def __call__(self, value: Any) -> None:
        task = self.task
        if task.motorpatch_waker is not self:
            return  # that wait is over (the other callback won, or it was cancelled)
        task.motorpatch_waker = None
        if (
            _slice.spent >= _SLICE_BUDGET
            or task.motorpatch_handoff is None
            or getcurrent() is not task.parent
        ):
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


def _waker() -> _Waker:
    """A new waker for the current (green) greenlet's next ``_park_direct``."""
    return _Waker(getcurrent())


def _park_direct(waker: _Waker, reason: str) -> Any:
    """Park until ``waker`` is called (it must be armed as a loop callback); return its value.

    The caller must be green code, and must disarm the callbacks in a ``finally``.
    """
    current = getcurrent()
    current.motorpatch_parked = reason
    current.motorpatch_waker = waker
    try:
        return current.parent.switch(_DIRECT)
    finally:
        current.motorpatch_parked = None
        current.motorpatch_waker = None


async def _drive(fn: Callable[..., _R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _R:
    """Run ``fn`` in a green greenlet, awaiting on its behalf until it returns."""
    loop = cast(AbstractEventLoop, _running_loop())
    if _slice.spent >= _SLICE_BUDGET:  # new calls wait their turn too, not only resumed ones
        await _wait_for_next_slice(loop)
    task = _take_task(loop)
    counted = counters()
    counted.calls += 1
    value = _run_slice(counted, task.switch, (fn, args, kwargs))
    while True:
        if type(value) is _Done or task.dead:
            return cast(_R, _finish(task, value))
        try:
            if value is _DIRECT:
                task.motorpatch_handoff = loop.create_future()
                try:
                    await task.motorpatch_handoff
                finally:
                    task.motorpatch_handoff = None
                value, task.motorpatch_message = task.motorpatch_message, None
                if type(value) is not _Resume:
                    continue  # finished, or parked on an awaitable
                result = value.value
            else:
                result = await value
            if _slice.spent >= _SLICE_BUDGET:
                await _wait_for_next_slice(loop)
        except GeneratorExit:
            # This coroutine is being closed (collected), maybe on another thread or in
            # the middle of other code: resuming the greenlet here could run its unwinding
            # anywhere. Leave it; it is never resumed (see docs/troubleshooting.md).
            task.motorpatch_waker = None
            raise
        except BaseException as exc:  # cancellation too: it is thrown into the greenlet
            task.motorpatch_waker = None  # a wake-up already queued must not resume it
            pending, task.motorpatch_message = task.motorpatch_message, None
            if type(pending) is _Done:  # it finished as the cancellation came
                _finish(task, pending)
                raise
            value = _run_slice(counted, task.throw, exc)
        else:
            value = _run_slice(counted, task.switch, result)


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


_warned_not_installed = False


def _warn_if_not_installed() -> None:
    global _warned_not_installed
    from motorpatch._install import is_installed

    if not _warned_not_installed and not is_installed():
        _warned_not_installed = True
        warnings.warn(
            "A @motorpatch.green function ran before motorpatch.install(): its PyMongo "
            "calls will block the event loop. Call motorpatch.install() once at start-up, "
            "before the loop serves requests.",
            BlockingCallWarning,
            stacklevel=3,
        )


def green(fn: Callable[_P, _R]) -> Callable[_P, _R | Coroutine[Any, Any, _R]]:
    """Run a synchronous function as green code, so blocking PyMongo calls park.

    Called on a thread whose event loop is running, outside green code, the
    decorated function returns an awaitable (a coroutine) of its result:
    ``await`` it, pass it to ``asyncio.gather``/``asyncio.wait_for``, or
    return it from a Tornado ``RequestHandler`` method. The function runs in
    a greenlet of its own (reused from a per-thread pool), in a copy of the
    caller's ``contextvars`` context; cancelling the awaiting task raises
    ``asyncio.CancelledError`` at the function's current wait. Exceptions
    reach the awaiter unchanged.

    Called from inside green code the function runs inline and returns its
    result (decorated service functions can call each other). Called where
    no event loop runs (a script, a plain thread) it runs synchronously and
    returns its result.

    Raises ``TypeError`` if ``fn`` is a coroutine function or not callable.
    """
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"@motorpatch.green cannot decorate {fn.__qualname__!r}: it is already "
            "asynchronous (async def). @green is for ordinary synchronous functions "
            "that call PyMongo; use the async function as it is, or remove 'async'."
        )
    if not callable(fn):
        raise TypeError(
            f"@motorpatch.green expects a function, got {type(fn).__name__!r}. "
            "Write @motorpatch.green above a def."
        )

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | Coroutine[Any, Any, _R]:
        if getattr(getcurrent(), _LOOP_ATTR, None) is not None or _running_loop() is None:
            return fn(*args, **kwargs)
        _warn_if_not_installed()
        return _drive(fn, args, kwargs)

    wrapper.__motorpatch_green__ = True  # type: ignore[attr-defined]
    return wrapper


def await_(awaitable: Awaitable[_R]) -> _R:
    """Wait, from green code, for ``awaitable`` on the event loop and return its result.

    Use it to call async libraries (``asyncio.sleep``, an HTTP client...)
    from inside a ``@motorpatch.green`` function. The awaitable's exception
    is raised here unchanged.

    Raises :class:`motorpatch.GreenContextError` when called outside green
    code, where there is no coroutine to await on this function's behalf.
    """
    loop = _green_loop()
    if loop is None:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # no "was never awaited" noise on top of our error
        raise GreenContextError(
            "motorpatch.await_() was called outside green code, so there is no event "
            "loop coroutine to await on its behalf. Call it only inside a function "
            "decorated with @motorpatch.green that was awaited on a running event loop "
            "(from a coroutine, write 'await the_awaitable' instead)."
        )
    if asyncio.isfuture(awaitable) and awaitable.get_loop() is not loop:
        raise GreenContextError(
            f"motorpatch.await_() got a future of another event loop ({awaitable.get_loop()!r}),"
            f" but this green code runs on {loop!r}; a loop can only wait for its own futures. "
            "Run that work on its own loop and wait for the result here: "
            "motorpatch.await_(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, "
            "other_loop)))."
        )
    return cast(_R, _park(awaitable, "await_"))

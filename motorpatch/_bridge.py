"""The greenlet <-> event loop bridge: ``green``, ``await_`` and parking.

A green call is a coroutine (``_drive``) that owns one greenlet. The
greenlet runs the user's synchronous function; whenever that code must wait
(``await_`` of any awaitable, or an internal park on a future), it switches
back to the coroutine with the awaitable, the coroutine ``await``s it on the
loop and switches the result (or throws the exception) back in. This is the
shape of SQLAlchemy's ``greenlet_spawn``/``await_only``: because a real
coroutine does the awaiting, asyncio cancellation, ``asyncio.wait_for``,
Tornado and contextvars all behave as they do for ordinary coroutines.

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
from time import perf_counter
from typing import Any, ParamSpec, TypeVar, cast

from greenlet import getcurrent
from greenlet import greenlet as _greenlet

from motorpatch._stats import _Counters, counters
from motorpatch.errors import BlockingCallWarning, GreenContextError

__all__ = ["await_", "green"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_LOOP_ATTR = "motorpatch_loop"


class _GreenTask(_greenlet):  # type: ignore[misc]
    """A greenlet running green code; tagged with the loop that drives it."""

    motorpatch_loop: AbstractEventLoop
    motorpatch_parked: str | None  # why it waits now (see _stats.REASONS), None if running

    def __init__(self, run: Callable[..., Any], parent: _greenlet, loop: AbstractEventLoop):
        super().__init__(run, parent)
        self.motorpatch_loop = loop
        self.motorpatch_parked = None


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


def _wake(fut: Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _park_until(
    loop: AbstractEventLoop, fut: Future[Any], timeout: float | None, reason: str
) -> Any:
    """Park until ``fut`` is resolved, or until ``timeout`` seconds pass (result False)."""
    if timeout is None:
        return _park(fut, reason)
    handle = loop.call_later(max(timeout, 0.0), _wake, fut, False)
    try:
        return _park(fut, reason)
    finally:
        handle.cancel()


def _yield_now(loop: AbstractEventLoop) -> None:
    """Let every callback already scheduled on the loop run before continuing."""
    fut = loop.create_future()
    loop.call_soon(_wake, fut, None)
    _park(fut, "yield")


# Fairness: when replies are already buffered, a resumed greenlet runs a whole
# PyMongo operation without parking, and one loop iteration can resume dozens
# of them back to back. Green code may run about this long (wall time spent
# inside greenlets) before the loop gets a whole iteration to itself; greenlets
# resumed after that wait for it, so timers and other requests are served in
# between (docs/architecture.md).
_SLICE_BUDGET = 0.002


class _Slice(threading.local):
    spent = 0.0
    armed: AbstractEventLoop | None = None  # the loop on which a reset is scheduled


_slice = _Slice()


def _new_iteration() -> None:
    _slice.spent = 0.0
    _slice.armed = None


def _run_slice(counted: _Counters, resume: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Resume the greenlet via ``resume`` and charge its CPU time to the current slice."""
    start = perf_counter()
    try:
        return resume(*args, **kw)
    finally:
        spent = perf_counter() - start
        _slice.spent += spent
        counted.green_seconds += spent


async def _wait_for_next_slice(loop: AbstractEventLoop) -> None:
    """Once green code has run ``_SLICE_BUDGET`` seconds, let the loop run a whole iteration.

    The budget is reset by a callback scheduled ahead of every greenlet deferred
    here, so the deferred ones resume (FIFO) in the next iteration, after the
    timers and I/O callbacks that were due. Only an exhausted budget costs an
    extra iteration: none is added per operation.
    """
    counters().deferrals += 1
    while _slice.spent >= _SLICE_BUDGET:
        # Arm a reset unless one is queued on this loop already. Re-checked on
        # every pass: greenlets resumed after the last reset may have spent the
        # budget again, and a reset armed on another loop (one that stopped
        # before running it) never comes.
        if _slice.armed is not loop:
            _slice.armed = loop
            loop.call_soon(_new_iteration)
        await asyncio.sleep(0)


# Every green greenlet not yet collected, for uninstall()'s check (weak: no leak).
_live: weakref.WeakSet[_GreenTask] = weakref.WeakSet()
_live_lock = threading.Lock()


def unfinished_on_open_loops() -> list[_GreenTask]:
    """Green calls started and not finished whose loop is not closed (any thread)."""
    with _live_lock:
        tasks = list(_live)
    return [t for t in tasks if not t.dead and not t.motorpatch_loop.is_closed()]


async def _drive(fn: Callable[..., _R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _R:
    """Run ``fn`` in a new green greenlet, awaiting on its behalf until it returns."""
    loop = cast(AbstractEventLoop, _running_loop())
    if _slice.spent >= _SLICE_BUDGET:  # new calls wait their turn too, not only resumed ones
        await _wait_for_next_slice(loop)
    task = _GreenTask(fn, getcurrent(), loop)
    with _live_lock:
        _live.add(task)
    # A copy of the caller's context, as asyncio gives each task.
    task.gr_context = contextvars.copy_context()
    counted = counters()
    counted.calls += 1
    value = _run_slice(counted, task.switch, *args, **kwargs)
    while not task.dead:
        try:
            result = await value
            if _slice.spent >= _SLICE_BUDGET:
                await _wait_for_next_slice(loop)
        except GeneratorExit:
            # This coroutine is being closed (collected), maybe on another thread or in
            # the middle of other code: resuming the greenlet here could run its unwinding
            # anywhere. Leave it; it is never resumed (see docs/troubleshooting.md).
            raise
        except BaseException as exc:  # cancellation too: it is thrown into the greenlet
            value = _run_slice(counted, task.throw, exc)
        else:
            value = _run_slice(counted, task.switch, result)
    return cast(_R, value)


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
    a new greenlet, in a copy of the caller's ``contextvars`` context;
    cancelling the awaiting task raises ``asyncio.CancelledError`` at the
    function's current wait. Exceptions reach the awaiter unchanged.

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

"""The greenlet <-> event loop bridge: ``green``, ``await_`` and the driving coroutine.

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

The greenlets themselves (tagging, the pool) are ``_greenlets``'s; the two
ways of waiting are ``_parking``'s; the fairness budget is ``_fairness``'s.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import warnings
from asyncio import AbstractEventLoop
from asyncio import _get_running_loop as _running_loop
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from greenlet import getcurrent

from motorpatch._fairness import _SLICE_BUDGET, _run_slice, _slice, _wait_for_next_slice
from motorpatch._greenlets import (
    _LOOP_ATTR,
    _Done,
    _finish,
    _green_loop,
    _recycle,
    _take_task,
)
from motorpatch._install import is_installed
from motorpatch._parking import _DIRECT, _park, _Resume
from motorpatch._stats import counters
from motorpatch.errors import BlockingCallWarning, GreenContextError

__all__ = ["await_", "green"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


async def _drive(fn: Callable[..., _R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _R:
    """Run ``fn`` in a green greenlet, awaiting on its behalf until it returns."""
    loop = cast(AbstractEventLoop, _running_loop())
    task = _take_task(loop)  # from here the call is in flight (stats(), uninstall())
    task.motorpatch_fn = fn  # the audit's call site for a stall that ends with the call
    if _slice.spent >= _SLICE_BUDGET:  # new calls wait their turn too, not only resumed ones
        task.motorpatch_parked = "yield"
        try:
            await _wait_for_next_slice(loop)
        except BaseException:  # cancelled before it started: the greenlet was not used
            _recycle(task)
            raise
        finally:
            task.motorpatch_parked = None
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


_warned_not_installed = False


def _warn_if_not_installed() -> None:
    global _warned_not_installed
    if _warned_not_installed or is_installed():
        return
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

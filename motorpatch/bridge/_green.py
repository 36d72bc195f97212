"""``green``, ``await_`` and the driving coroutine: the bridge's public entry points.

A green call is a coroutine (``_drive``) that owns one greenlet (taken from
a per-thread pool) for the call. The greenlet runs the user's synchronous
function; whenever that code must ``await_`` an awaitable, it switches back
to the coroutine with it, the coroutine ``await``s it on the loop and
switches the result (or throws the exception) back in. This is the shape of
SQLAlchemy's ``greenlet_spawn``/``await_only``: because a real coroutine does
the awaiting, asyncio cancellation, ``asyncio.wait_for``, Tornado and
contextvars all behave as they do for ordinary coroutines. The hot waits
(socket readiness, timers, condition wake-ups) skip the future: the loop's
callback switches straight into the greenlet (``park_direct``), and the
coroutine hears only of the call's end, or of an awaitable to await.

The greenlets themselves (tagging, the pool) and the messages the driver and
a greenlet exchange (a table) are ``_greenlets``'s; the two ways of waiting
are ``_parking``'s; the fairness budget is ``_fairness``'s.
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

from motorpatch.bridge._fairness import SLICE_BUDGET, budget, run_slice, wait_for_next_slice
from motorpatch.bridge._greenlets import (
    LOOP_ATTR,
    PARKED,
    Deferred,
    Outcome,
    finish,
    green_loop,
    recycle,
    take_greenlet,
)
from motorpatch.bridge._parking import park
from motorpatch.bridge._state import counters, is_installed
from motorpatch.errors import BlockingCallWarning, GreenContextError

__all__ = ["await_", "green"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


async def _drive(fn: Callable[..., _R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _R:
    """Run ``fn`` in a green greenlet, awaiting on its behalf until it returns.

    Each branch answers one message of the switch protocol (the table in
    :mod:`motorpatch.bridge._greenlets`).
    """
    loop = cast(AbstractEventLoop, _running_loop())
    gl = take_greenlet(loop)  # from here the call is in flight (stats(), uninstall())
    gl.motorpatch_fn = fn  # the audit's call site for a stall that ends with the call
    if budget.spent >= SLICE_BUDGET:  # new calls wait their turn too, not only resumed ones
        gl.motorpatch_parked = "yield"
        try:
            await wait_for_next_slice(loop)
        except BaseException:  # cancelled before it started: the greenlet was not used
            recycle(gl)
            raise
        finally:
            gl.motorpatch_parked = None
    counted = counters()
    counted.calls += 1
    value = run_slice(counted, gl.switch, (fn, args, kwargs))
    while True:
        if type(value) is Outcome or gl.dead:
            return cast(_R, finish(gl, value))
        try:
            if value is PARKED:
                gl.motorpatch_handoff = loop.create_future()
                try:
                    await gl.motorpatch_handoff
                finally:
                    gl.motorpatch_handoff = None
                value, gl.motorpatch_message = gl.motorpatch_message, None
                if type(value) is not Deferred:
                    continue  # an Outcome, or an awaitable to await
                result = value.value
            else:  # an awaitable
                result = await value
            if budget.spent >= SLICE_BUDGET:
                await wait_for_next_slice(loop)
        except GeneratorExit:
            # This coroutine is being closed (collected), maybe on another thread or in
            # the middle of other code: resuming the greenlet here could run its unwinding
            # anywhere. Leave it; it is never resumed (see docs/troubleshooting.md).
            gl.motorpatch_waker = None
            raise
        except BaseException as exc:  # cancellation too: it is thrown into the greenlet
            gl.motorpatch_waker = None  # a wake-up already queued must not resume it
            pending, gl.motorpatch_message = gl.motorpatch_message, None
            if type(pending) is Outcome:  # it finished as the cancellation came
                finish(gl, pending)
                raise
            value = run_slice(counted, gl.throw, exc)
        else:
            value = run_slice(counted, gl.switch, result)


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


def green(fn: Callable[_P, _R]) -> Callable[_P, Awaitable[_R]]:
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
    returns its result. The declared type is the awaitable one, the way
    handlers use it (``await f()`` type-checks); where a type checker must
    see an inline call's result, decorate an alias and call the plain
    function inline (docs/architecture.md#how-green-is-typed).

    :raises TypeError: ``fn`` is a coroutine function or not callable.
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
        if getattr(getcurrent(), LOOP_ATTR, None) is not None or _running_loop() is None:
            return fn(*args, **kwargs)
        _warn_if_not_installed()
        return _drive(fn, args, kwargs)

    wrapper.__motorpatch_green__ = True  # type: ignore[attr-defined]
    # Awaitable for callers on a loop; the inline result elsewhere (see the docstring).
    return cast(Callable[_P, Awaitable[_R]], wrapper)


def await_(awaitable: Awaitable[_R]) -> _R:
    """Wait, from green code, for ``awaitable`` on the event loop and return its result.

    Use it to call async libraries (``asyncio.sleep``, an HTTP client...)
    from inside a ``@motorpatch.green`` function. The awaitable's exception
    is raised here unchanged.

    :raises GreenContextError: called outside green code, where there is no
        coroutine to await on this function's behalf.
    """
    loop = green_loop()
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
    return cast(_R, park(awaitable, "await_"))

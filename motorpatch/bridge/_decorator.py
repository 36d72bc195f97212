"""The ``@green`` decorator: what a call of a green function does, wherever it is made.

A ``@green`` wrapper is marked as a coroutine function (``_marker``), so
FastAPI, Starlette, aiohttp and asgiref await it on their loop. Each call
then takes one of three paths:

- on a thread whose event loop runs, outside green code: a coroutine that
  runs the function in a greenlet (``_green.drive``);
- inside green code: the function runs inline and returns its value;
- on a thread with no running loop: the function runs synchronously
  (``_fallback`` warns once when that looks unintended, and hands a
  coroutine to callers known to await the result on a loop of their own).

A generator function becomes an async generator function whose every step
runs as green code (``_green_iter``).
"""

from __future__ import annotations

import functools
import inspect
import sys
from asyncio import _get_running_loop as _running_loop
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from greenlet import getcurrent

from motorpatch.bridge._fallback import awaited_elsewhere, note_loop, plain_call_check
from motorpatch.bridge._green import drive, warn_if_not_installed
from motorpatch.bridge._green_iter import green_generator
from motorpatch.bridge._greenlets import LOOP_ATTR
from motorpatch.bridge._marker import is_async, is_green, mark

__all__ = ["green"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_last_loop = 0  # id() of the loop of the latest green call: a cheap "new loop?" check


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

    The wrapper is marked as a coroutine function, so frameworks that check
    (FastAPI, Starlette, aiohttp, Django through asgiref) await it on their
    event loop instead of running it in a worker thread. Put the framework's
    route decorator above ``@green``.

    Called from inside green code the function runs inline and returns its
    result (decorated service functions can call each other). Called where
    no event loop runs (a script, a plain thread) it runs synchronously and
    returns its result; if an event loop serves in another thread meanwhile
    (a framework's worker thread), :class:`PlainFallbackWarning` says so once,
    unless the call is inside :func:`allow_plain`.

    A generator function becomes an async generator function: each step of
    the generator (and the code after its last ``yield``) runs as green code,
    so ``async for`` and FastAPI's ``yield`` dependencies drive it on the loop.
    The plain generator function stays available as ``__wrapped__``.

    The declared type is the awaitable one, the way handlers use it (``await
    f()`` type-checks); where a type checker must see an inline call's
    result, decorate an alias and call the plain function inline
    (docs/architecture.md#how-green-is-typed).

    Decorating a function that is already ``@green`` returns it unchanged.

    :raises TypeError: ``fn`` is a coroutine function (or marked as one) or
        not callable.
    """
    if is_green(fn):
        return cast(Callable[_P, Awaitable[_R]], fn)  # already green: the same wrapper
    if is_async(fn):
        raise TypeError(
            f"@motorpatch.green cannot decorate {getattr(fn, '__qualname__', fn)!r}: it is "
            "already asynchronous (async def). @green is for ordinary synchronous functions "
            "that call PyMongo; use the async function as it is, or remove 'async'."
        )
    if not callable(fn):
        raise TypeError(
            f"@motorpatch.green expects a function, got {type(fn).__name__!r}. "
            "Write @motorpatch.green above a def."
        )
    if inspect.isgeneratorfunction(fn):
        # Typed as the awaitable case: docs/architecture.md#how-green-is-typed.
        return cast(Callable[_P, Awaitable[_R]], mark(green_generator(fn), coroutine=False))

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | Coroutine[Any, Any, _R]:
        global _last_loop
        if getattr(getcurrent(), LOOP_ATTR, None) is not None:
            return fn(*args, **kwargs)
        loop = _running_loop()
        if loop is None:
            if awaited_elsewhere(sys._getframe(1).f_code):
                return drive(fn, args, kwargs)  # runs when awaited, on the awaiter's loop
            plain_call_check(fn)
            return fn(*args, **kwargs)
        if id(loop) != _last_loop:
            _last_loop = id(loop)
            note_loop(loop)
        warn_if_not_installed()
        return drive(fn, args, kwargs)

    # Awaitable for callers on a loop; the inline result elsewhere (see the docstring).
    return cast(Callable[_P, Awaitable[_R]], mark(wrapper))

"""Where a green function runs plain: no event loop on its thread, outside green code.

``@green`` marks its wrapper as a coroutine function, so frameworks await it
on their loop. Called on a thread where no loop runs, the wrapper runs the
function synchronously instead (scripts, start-up code, your own threads).
This module owns that path:

- a call from code known to await the result off its own thread (asgiref's
  ``async_to_sync``, which calls the function before its loop starts) gets a
  coroutine, so it runs as green code on the loop that awaits it;
- a plain run while an event loop serves in another thread (a framework's
  worker thread, asyncio's default executor, any thread while a loop that
  ran green calls is running) emits :class:`PlainFallbackWarning` once per
  function, naming the cause and the fix;
- :func:`allow_plain` says "plain here is intended": no warning inside it.

Only modules already imported are consulted (anyio, asgiref): nothing here
imports a framework.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import sys
import threading
import warnings
import weakref
from asyncio import AbstractEventLoop
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

from motorpatch.errors import PlainFallbackWarning

__all__ = ["allow_plain", "awaited_elsewhere", "note_loop", "plain_call_check"]

_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "motorpatch_allow_plain", default=False
)

# Loops that have run green calls (weak: a closed, dropped loop goes away).
_loops: weakref.WeakSet[AbstractEventLoop] = weakref.WeakSet()
_loops_lock = threading.Lock()
_warned: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()  # warned once each


@contextlib.contextmanager
def allow_plain() -> Iterator[None]:
    """Run ``@green`` functions called in this block as plain code, without a warning.

    A green function called on a thread where no event loop runs executes
    synchronously. When an event loop serves in another thread at that time
    (a framework put the function in its thread pool, or your thread runs
    next to an app), motorpatch warns once with :class:`PlainFallbackWarning`.
    Wrap calls you make from your own threads on purpose in this block (or
    decorate the thread's function with ``@motorpatch.allow_plain()``) to say
    that plain, blocking behaviour is what you want there. It applies to the
    current thread's context only, and nests.
    """
    token = _allowed.set(True)
    try:
        yield
    finally:
        _allowed.reset(token)


def note_loop(loop: AbstractEventLoop) -> None:
    """Remember ``loop`` as one that runs green calls (for the warning's check)."""
    with _loops_lock:
        _loops.add(loop)


def _serving_loop() -> str | None:
    """Why this loop-less thread is next to a serving loop (the warning's cause), or None."""
    if _anyio_worker_loop() is not None:
        return (
            "it ran in an AnyIO worker thread (FastAPI and Starlette run a sync path "
            "operation, dependency or background task there when they do not see it as "
            "async)"
        )
    asgiref = sys.modules.get("asgiref.sync")
    if asgiref is not None:
        loop = getattr(asgiref.SyncToAsync.threadlocal, "main_event_loop", None)
        if loop is not None and loop.is_running():
            return (
                "it ran in a sync_to_async worker thread (Django and asgiref run a view or "
                "function they do not see as async there)"
            )
    if threading.current_thread().name.startswith("asyncio_"):
        return "it ran in the event loop's default executor (run_in_executor, to_thread)"
    if not _loops:
        return None
    with _loops_lock:
        for loop in [loop for loop in _loops if loop.is_closed()]:
            _loops.discard(loop)  # a closed loop never serves again
        running = any(loop.is_running() for loop in _loops)
    if running:
        return "it was called on a thread with no event loop while a loop runs green calls"
    return None


def _anyio_worker_loop() -> AbstractEventLoop | None:
    eventloop = sys.modules.get("anyio._core._eventloop")
    if eventloop is None:
        return None
    token = getattr(eventloop.threadlocals, "current_token", None)
    loop = getattr(token, "native_token", None)
    if isinstance(loop, AbstractEventLoop) and loop.is_running():
        return loop
    return None


def plain_call_check(fn: Callable[..., Any]) -> None:
    """Before ``fn`` runs plain on a loop-less thread: warn once if a loop serves elsewhere."""
    if _allowed.get() or fn in _warned:
        return
    cause = _serving_loop()
    if cause is None:
        return
    with contextlib.suppress(TypeError):  # not weakly referenceable: warned every time
        _warned.add(fn)
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    code = getattr(inspect.unwrap(fn), "__code__", None)
    warnings.warn_explicit(  # at the function's def: the frames above are the framework's
        f"@motorpatch.green function {name} ran as plain blocking code on thread "
        f"{threading.current_thread().name!r}, not as green code on the event loop: "
        f"{cause}. Fix: let the framework call it on its loop: put the route decorator "
        "(@app.get, @routes.get...) directly above @motorpatch.green, and any sync "
        "decorator below it (see docs/frameworks.md); call it with 'await' from async "
        "code. If you call it from your own thread on purpose, wrap the call in "
        "'with motorpatch.allow_plain():'.",
        PlainFallbackWarning,
        code.co_filename if code else "<unknown>",
        code.co_firstlineno if code else 0,
        module=getattr(fn, "__module__", None),
    )


# -- callers that await what a coroutine function returns, off their own thread --------
_awaiting_codes: dict[str, CodeType | None] = {}


def awaited_elsewhere(frame_code: CodeType) -> bool:
    """True if ``frame_code`` (the wrapper's caller) awaits the result on another loop.

    asgiref's ``AsyncToSync.__call__`` (``async_to_sync``, which Django uses to
    serve an async view under WSGI) calls the function on its own, loop-less
    thread and awaits the result in a loop it starts in a new thread.
    """
    asgiref = sys.modules.get("asgiref.sync")
    if asgiref is None:
        return False
    code = _awaiting_codes.get("asgiref")
    if code is None:
        call = getattr(getattr(asgiref, "AsyncToSync", None), "__call__", None)  # noqa: B004
        code = getattr(call, "__code__", None)
        _awaiting_codes["asgiref"] = code
    return frame_code is code

"""Async iteration over sync iterators: ``green_iter`` and ``@green`` generator functions.

``async for doc in green_iter(collection.find())`` runs each ``next()`` of
the cursor (and so each ``getMore``) as a green call: the loop serves other
work while the cursor waits for a batch. ``@green`` over a generator
function makes an async generator function that drives the generator the
same way, forwarding ``asend``/``athrow``/``aclose`` (what FastAPI's
``yield`` dependencies and ``contextlib.asynccontextmanager`` use).
"""

from __future__ import annotations

import functools
import inspect
from asyncio import _get_running_loop as _running_loop
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Iterator
from typing import Any, TypeVar

from motorpatch.bridge._green import drive, warn_if_not_installed

__all__ = ["green_generator", "green_iter"]

_T = TypeVar("_T")
_DONE: Any = object()  # what _step returns for StopIteration (it cannot cross a coroutine)


def _step(step: Callable[[Any], _T], arg: Any) -> _T:
    try:
        return step(arg)
    except StopIteration:
        return _DONE  # type: ignore[no-any-return]


async def green_iter(iterable: Iterable[_T]) -> AsyncGenerator[_T, None]:
    """Iterate a synchronous iterable asynchronously, each ``next()`` as green code.

    For streaming a PyMongo cursor (or any sync iterator whose ``next()`` may
    block on PyMongo) from async code::

        async for doc in motorpatch.green_iter(db.events.find()):
            ...

    ``iter(iterable)`` and every ``next()`` run as green calls on the
    running loop, so a ``getMore`` parks instead of blocking; each item costs
    one green call (a few microseconds), and nothing is fetched ahead of the
    consumer. Use it only in a coroutine on a running loop. When the
    iteration ends early (``break``, an exception, cancellation) and the
    async iterator is closed, the iterator's ``close()`` (a cursor's
    ``killCursors``) runs as green code too; close it promptly with
    ``contextlib.aclosing``.
    """
    warn_if_not_installed()
    it: Iterator[_T] = await drive(iter, (iterable,), {})
    finished = False
    try:
        while True:
            item = await drive(_step, (next, it), {})
            if item is _DONE:
                finished = True
                return
            yield item
    finally:
        close = getattr(it, "close", None)
        if not finished and close is not None:
            await _close(close)


async def _close(close: Callable[[], object]) -> None:
    if _running_loop() is None:  # finalised without a loop (at exit): close it plainly
        close()
    else:
        await drive(close, (), {})


def green_generator(
    fn: Callable[..., Generator[_T, Any, Any]],
) -> Callable[..., AsyncGenerator[_T, Any]]:
    """An async generator function driving ``fn``'s generator, each step as green code."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[_T, Any]:
        warn_if_not_installed()
        gen = fn(*args, **kwargs)  # creating a generator runs none of its body
        step: Callable[[Any], _T] = gen.send
        arg: Any = None
        try:
            while True:
                item = await drive(_step, (step, arg), {})
                if item is _DONE:
                    return
                try:
                    arg = yield item
                    step = gen.send
                except GeneratorExit:
                    raise
                except BaseException as exc:  # athrow(): into the generator, at its yield
                    step, arg = gen.throw, exc
        finally:
            # Stopped at a yield: run its finally blocks, as green code.
            if inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED:
                await _close(gen.close)

    return wrapper

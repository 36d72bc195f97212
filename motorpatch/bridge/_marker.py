"""The coroutine-function marker on ``@green`` wrappers, for the frameworks' own checks.

Web frameworks decide whether to ``await`` a handler or to run it in a
worker thread by asking whether it is a coroutine function, and each asks
in its own way:

- ``asyncio.iscoroutinefunction`` (FastAPI and Starlette below Python 3.13,
  aiohttp below 3.14, asgiref on 3.11) is true for a function carrying
  ``_is_coroutine = asyncio.coroutines._is_coroutine``;
- ``inspect.iscoroutinefunction`` (FastAPI and Starlette from 3.13, aiohttp,
  asgiref from 3.12) is true, from Python 3.12, for a function marked with
  ``inspect.markcoroutinefunction``; on 3.11 it reads only the code flags.

``mark`` sets both markers that the running Python knows. Both are plain
attributes in the wrapper's ``__dict__``, so they are seen through bound
methods, and FastAPI and Starlette (which strip ``functools.partial``)
check the wrapper before they follow ``__wrapped__`` to the sync function.
"""

from __future__ import annotations

import asyncio.coroutines
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["GREEN_ATTR", "is_async", "is_green", "mark"]

_F = TypeVar("_F", bound=Callable[..., Any])

# Set on every @green wrapper; functools.wraps copies it to decorators stacked above.
GREEN_ATTR = "__motorpatch_green__"

# asyncio's legacy marker: read by asyncio.iscoroutinefunction up to its removal.
_ASYNCIO_MARK: object | None = getattr(asyncio.coroutines, "_is_coroutine", None)
_MARK_INSPECT: Callable[[Any], Any] | None = getattr(inspect, "markcoroutinefunction", None)


def mark(wrapper: _F, *, coroutine: bool = True) -> _F:
    """Mark ``wrapper`` as green and (``coroutine``) as a coroutine function for both checks.

    An async generator function (``@green`` over a generator) gets only the
    green marker: its code flags already say what it is.
    """
    setattr(wrapper, GREEN_ATTR, True)
    if not coroutine:
        return wrapper
    if _ASYNCIO_MARK is not None:
        wrapper._is_coroutine = _ASYNCIO_MARK  # type: ignore[attr-defined]
    if _MARK_INSPECT is not None:  # Python 3.12+
        _MARK_INSPECT(wrapper)
    return wrapper


def is_green(fn: object) -> bool:
    """True if ``fn`` is a ``@green`` wrapper, or a decorator over one that copied its marker."""
    return getattr(fn, GREEN_ATTR, False) is True


def is_async(fn: object) -> bool:
    """True if ``fn`` is async by either stdlib check (``async def``, or marked by a library)."""
    return (
        inspect.iscoroutinefunction(fn)
        or inspect.isasyncgenfunction(fn)
        or (_ASYNCIO_MARK is not None and getattr(fn, "_is_coroutine", None) is _ASYNCIO_MARK)
    )

"""Django views as green code: ``green_view``, which Django runs the right way per handler.

This module owns the one Django-specific decision: how a green view tells
Django's request handler whether it is asynchronous. Django asks
``asgiref.sync.iscoroutinefunction(view)`` on every request, and acts on the
answer where it asks:

- under ASGI (uvicorn, daphne...) it asks on the event loop's thread, then
  awaits an asynchronous view there or sends a synchronous one to a worker
  thread (``sync_to_async``);
- under WSGI (gunicorn sync workers, ``runserver``, ``django.test.Client``)
  it asks on the request's thread, where no loop runs, and calls a
  synchronous view directly or runs an asynchronous one through
  ``async_to_sync``, which calls the view right there and then awaits its
  result (a plain ``HttpResponse`` from a function that ran plainly: a
  ``TypeError`` and an HTTP 500);
- with ``ATOMIC_REQUESTS`` for a database it refuses asynchronous views
  (``"You cannot use ATOMIC_REQUESTS with async views."``), because the
  transaction belongs to the connection of the thread that runs the view.

A green function is asynchronous exactly where an event loop runs on the
calling thread (it returns an awaitable there, and its plain result
elsewhere), so ``green_view`` answers the question that way, at the moment
Django asks it: asynchronous under ASGI (the view runs as green code on the
loop), synchronous under WSGI (it runs plainly on the request's thread, as
any sync view). Where ``ATOMIC_REQUESTS`` applies to the view it answers
synchronous everywhere, so Django wraps it in ``transaction.atomic`` and, under
ASGI, runs it in its worker thread, plainly: exempt the view with
``@transaction.non_atomic_requests`` to have it run green.

Class-based views: decorate the ``as_view()`` result, ``green_view(View.as_view())``;
the whole ``dispatch`` then runs as one green call. Django itself is imported
lazily, when a view is first asked about ``ATOMIC_REQUESTS``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from asyncio import _get_running_loop as _running_loop
from collections.abc import Callable
from typing import Any

from motorpatch import allow_plain, green

__all__ = ["green_view"]

# What asyncio.iscoroutinefunction (3.11) and asgiref look for, and inspect's mark (3.12+).
_ASYNCIO_MARK: Any = getattr(asyncio.coroutines, "_is_coroutine", None)
_INSPECT_MARK: Any = getattr(inspect, "_is_coroutine_mark", None)


def _atomic_requests_apply(view: object) -> bool:
    from django.db import connections

    exempt: set[str] = getattr(view, "_non_atomic_requests", set())
    return any(
        settings["ATOMIC_REQUESTS"] and alias not in exempt
        for alias, settings in connections.settings.items()
    )


class green_view:
    """Make a synchronous Django view (a function, or ``SomeView.as_view()``) green.

    Under ASGI the view runs as green code on the event loop: its PyMongo
    calls park instead of blocking the loop. Under WSGI, and wherever
    ``ATOMIC_REQUESTS`` applies to it, Django runs it as an ordinary sync view.

    Raises ``TypeError`` for a class or a method of one (decorate
    ``View.as_view()``), an ``async def`` view, or anything not callable.
    """

    def __init__(self, view: Callable[..., Any]) -> None:
        if isinstance(view, type):
            raise TypeError(
                f"green_view expects a view function, got the class {view.__qualname__!r}. "
                f"Decorate its view function instead: green_view({view.__name__}.as_view())."
            )
        self._green = green(view)  # green() rejects async def and non-callables
        functools.update_wrapper(self, view)
        # update_wrapper copied the view's attributes; a marker copied from an
        # already-marked view must not shadow the answer given per call below.
        vars(self).pop("_is_coroutine", None)
        vars(self).pop("_is_coroutine_marker", None)

    def __set_name__(self, owner: type, name: str) -> None:
        raise TypeError(
            f"green_view decorates view functions, not the method {owner.__qualname__}.{name}. "
            f"Leave the methods plain and decorate the view function instead: "
            f"green_view({owner.__name__}.as_view())."
        )

    def _is_async_here(self) -> bool:
        return _running_loop() is not None and not _atomic_requests_apply(self)

    @property
    def _is_coroutine(self) -> Any:
        """asyncio's and asgiref's coroutine-function mark, given where a loop runs."""
        return _ASYNCIO_MARK if self._is_async_here() else None

    @property
    def _is_coroutine_marker(self) -> Any:
        """inspect.markcoroutinefunction's mark (Python 3.12+), likewise."""
        return _INSPECT_MARK if self._is_async_here() else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _running_loop() is not None:
            return self._green(*args, **kwargs)
        with allow_plain():  # Django chose the sync path: plain is what it asked for
            return self._green(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<green_view {getattr(self, '__qualname__', self._green)!r}>"

"""``@green`` wrappers as the frameworks' own checks see them, and the edges of the marker.

Each check is the installed framework's real function (FastAPI, Starlette,
asgiref, aiohttp's route registration, asyncio/inspect), called on the forms
users write: a function, a method (through the class and bound), a class-based
view, ``functools.partial``, a sync decorator stacked over ``@green``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from asgiref.sync import async_to_sync
from asgiref.sync import iscoroutinefunction as asgiref_iscoroutinefunction
from fastapi.dependencies.models import _is_async_gen_callable, _is_coroutine_callable
from starlette._utils import is_async_callable

import motorpatch
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")


def _in_green_code() -> bool:
    """True inside green code: only there can await_ wait for something on the loop."""
    try:
        motorpatch.await_(asyncio.sleep(0))
    except motorpatch.GreenContextError:
        return False
    return True


@motorpatch.green
def read_item(item_id: int) -> dict[str, Any]:
    return {"item_id": item_id, "green": _in_green_code()}


def log_calls(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A sync decorator as users write them: passes the result through, copies metadata."""

    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return inner


class ItemView:
    @motorpatch.green
    def get(self, item_id: int) -> dict[str, Any]:
        return read_item(item_id)  # type: ignore[return-value]


FORMS: dict[str, Callable[..., Any]] = {
    "function": read_item,
    "method through the class": ItemView.get,
    "bound method": ItemView().get,
    "sync decorator over @green": log_calls(read_item),
}

FRAMEWORK_CHECKS: dict[str, Callable[[Any], bool]] = {
    "starlette is_async_callable": is_async_callable,
    "fastapi _is_coroutine_callable": _is_coroutine_callable,
    "asgiref iscoroutinefunction": asgiref_iscoroutinefunction,
    "asyncio.iscoroutinefunction": asyncio.iscoroutinefunction,
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("check", FRAMEWORK_CHECKS)
def test_frameworks_see_green_functions_as_coroutine_functions(form: str, check: str) -> None:
    assert FRAMEWORK_CHECKS[check](FORMS[form]) is True


@pytest.mark.parametrize("form", FORMS)
def test_inspect_sees_the_marker_from_python_3_12(form: str) -> None:
    """inspect.markcoroutinefunction is new in 3.12; FastAPI and Starlette use inspect on 3.13."""
    expected = sys.version_info >= (3, 12)
    assert inspect.iscoroutinefunction(FORMS[form]) is expected


def test_partial_is_seen_by_the_frameworks_that_strip_partials() -> None:
    """Starlette and FastAPI unwrap functools.partial themselves; asyncio on 3.11 does not."""
    partial = functools.partial(read_item, 1)
    assert is_async_callable(partial)
    assert _is_coroutine_callable(partial)
    assert asyncio.iscoroutinefunction(partial) is (sys.version_info >= (3, 12))


def test_fastapi_sees_a_green_generator_as_an_async_generator_dependency() -> None:
    @motorpatch.green
    def get_session() -> Any:
        yield "session"

    assert _is_async_gen_callable(get_session)
    assert inspect.isasyncgenfunction(get_session)
    assert not asyncio.iscoroutinefunction(get_session)  # not awaited as a plain call
    # FastAPI's own check order: an async generator wins over the sync one behind __wrapped__.
    assert inspect.isgeneratorfunction(inspect.unwrap(get_session))


def test_aiohttp_takes_green_handlers_and_view_methods_without_the_bare_function_shim() -> None:
    routes = web.RouteTableDef()

    @routes.get("/items/{item_id}")
    @motorpatch.green
    def get_item(request: web.Request) -> web.Response:
        return web.json_response({})

    class Items(web.View):
        @motorpatch.green
        def get(self) -> web.Response:
            return web.json_response({})

    app = web.Application()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Bare functions are deprecated" would raise here
        app.add_routes(routes)
        app.router.add_get("/direct", get_item)
        app.router.add_view("/view", Items)
    registered = [route.handler for route in app.router.routes()]
    assert get_item in registered  # not aiohttp's handler_wrapper around it
    assert Items in registered


def test_green_of_green_is_the_same_wrapper() -> None:
    assert motorpatch.green(read_item) is read_item
    decorated = log_calls(read_item)
    assert motorpatch.green(decorated) is decorated  # already returns green's coroutine


def test_green_rejects_functions_marked_async_by_other_libraries() -> None:
    from asgiref.sync import markcoroutinefunction

    def handler() -> None: ...

    with pytest.raises(TypeError, match=r"already asynchronous"):
        motorpatch.green(markcoroutinefunction(handler))


def test_a_sync_decorator_over_green_passes_the_coroutine_through() -> None:
    async def main() -> Any:
        return await log_calls(read_item)(3)

    assert run_on("asyncio", main) == {"item_id": 3, "green": True}


def test_bound_methods_run_as_green_code() -> None:
    async def main() -> Any:
        return await ItemView().get(4)

    assert run_on("asyncio", main) == {"item_id": 4, "green": True}


def test_called_with_no_running_loop_it_returns_the_plain_value() -> None:
    """Scripts and start-up code: no loop on this thread, nothing serving elsewhere."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_item(5) == {"item_id": 5, "green": False}


def test_async_to_sync_awaits_a_green_function_as_green_code() -> None:
    """asgiref calls the function off its loop and awaits the result in a loop of its own.

    Without help it would get the plain value and fail with "can't be used in
    'await' expression": the wrapper hands it a coroutine instead.
    """
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(async_to_sync(read_item)(6)))
    thread.start()
    thread.join(30)
    assert results == [{"item_id": 6, "green": True}]


def test_async_to_sync_of_a_bound_green_method() -> None:
    results: list[Any] = []
    view = ItemView()
    thread = threading.Thread(target=lambda: results.append(async_to_sync(view.get)(7)))
    thread.start()
    thread.join(30)
    assert results == [{"item_id": 7, "green": True}]


def test_sync_to_async_refuses_a_green_function_with_asgirefs_error() -> None:
    """It is already async: ``await fn()`` it instead (docs/frameworks.md)."""
    from asgiref.sync import sync_to_async

    with pytest.raises(TypeError, match="can only be applied to sync functions"):
        sync_to_async(read_item)


def test_awaiting_a_green_functions_inline_value_says_why() -> None:
    """Generic green code that awaits whatever a handler returns meets a green handler's value."""

    @motorpatch.green
    def middleware(handler: Callable[[int], Any]) -> Any:
        return motorpatch.await_(handler(8))  # handler is green: inline, a plain value here

    async def main() -> None:
        with pytest.raises(TypeError, match=r"got 'dict'.*run inline and return their value"):
            await middleware(read_item)

    run_on("asyncio", main)

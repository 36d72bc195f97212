"""Misuse gets an error that names the mistake and the fix.

Already covered elsewhere (not repeated here): ``@green`` on an ``async def``
or a non-callable (tests/bridge/test_green.py::test_green_rejects_coroutine_functions),
``await_`` outside green code (tests/bridge/test_green.py::
test_await_outside_green_raises_a_teaching_error), ``install()`` on an
unsupported PyMongo (tests/test_install.py::test_install_refuses_before_patching_anything
and ::test_unsupported_pymongo_versions_are_refused_by_name). Here: ``@green``
on an async generator function, ``await_`` of something not awaitable, a
green function used after its loop closed, and one green call mixing two
loops (a future of another loop's thread).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import motorpatch
from motorpatch.bridge import green_loop
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")


def test_green_rejects_an_async_generator_function() -> None:
    async def stream() -> Any:
        yield 1

    with pytest.raises(TypeError) as info:
        motorpatch.green(stream)
    message = str(info.value)
    assert "'test_green_rejects_an_async_generator_function.<locals>.stream'" in message
    assert "already asynchronous" in message and "remove 'async'" in message


def test_await_of_something_not_awaitable_names_it(loop_kind: str) -> None:
    @motorpatch.green
    def wrong() -> Any:
        return motorpatch.await_(42)  # type: ignore[arg-type]

    async def main() -> None:
        with pytest.raises(TypeError, match=r"int.*can't be used in 'await' expression"):
            await wrong()

    run_on(loop_kind, main)


def test_a_green_function_keeps_working_after_its_loop_closed(coll: Any) -> None:
    """Closed loop, then no loop (runs synchronously, plain), then a new loop (green again)."""
    coll.insert_one({"_id": 1})

    @motorpatch.green
    def get() -> tuple[Any, bool]:
        return coll.find_one({"_id": 1}), green_loop() is not None

    made_on_first_loop: list[Any] = []

    async def first() -> Any:
        made_on_first_loop.append(get())  # created on this loop, never awaited here
        return await get()

    assert run_on("asyncio", first) == ({"_id": 1}, True)
    assert get() == ({"_id": 1}, False)  # no loop now: plain, synchronous

    async def second() -> Any:
        return await made_on_first_loop[0]  # the call created on the closed loop

    assert run_on("asyncio", second) == ({"_id": 1}, True)


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _await_foreign_future(loop_kind: str, other: asyncio.AbstractEventLoop) -> BaseException:
    @motorpatch.green
    def mixed() -> Any:
        fut = other.create_future()  # belongs to the other loop; never resolved
        return motorpatch.await_(fut)

    async def main() -> BaseException:
        try:
            await mixed()
        except Exception as exc:
            return exc
        raise AssertionError("awaiting another loop's future did not fail")

    return run_on(loop_kind, main, timeout=10)


def test_mixing_two_loops_in_one_green_call_names_the_mistake_and_the_fix(
    loop_kind, other_loop
) -> None:
    error = _await_foreign_future(loop_kind, other_loop)
    assert isinstance(error, motorpatch.GreenContextError)
    assert "future of another event loop" in str(error)
    assert "await_" in str(error) and "run_coroutine_threadsafe" in str(error)


def test_a_cross_thread_future_wrapped_for_this_loop_works(loop_kind, other_loop) -> None:
    """The fix the error should name: run it on its loop, await a wrapped future here."""

    async def on_other() -> str:
        await asyncio.sleep(0.01)
        return "from the other loop"

    @motorpatch.green
    def mixed_right() -> Any:
        cf = asyncio.run_coroutine_threadsafe(on_other(), other_loop)
        return motorpatch.await_(asyncio.wrap_future(cf))

    assert run_on(loop_kind, mixed_right, timeout=10) == "from the other loop"

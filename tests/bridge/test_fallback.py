"""No silent fallback: a green function run plain next to a serving loop warns once, with the fix.

Each test defines its own green functions: the warning is once per function.
The worker threads are the real ones (AnyIO's, which FastAPI and Starlette
use; asyncio's default executor; a plain ``threading.Thread``).
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

import motorpatch
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")


def _on_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a new plain thread, recording its warnings; return (result, warnings)."""
    out: list[Any] = []

    def run() -> None:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            out.append(fn())
        out.append([w for w in seen if issubclass(w.category, motorpatch.PlainFallbackWarning)])

    thread = threading.Thread(target=run, name="report-thread")
    thread.start()
    thread.join(30)
    return out[0], out[1]


def test_anyio_worker_thread_warns_once_with_cause_and_fix() -> None:
    """What FastAPI and Starlette do with a handler they take for sync: AnyIO's thread pool."""

    @motorpatch.green
    def lookup() -> int:
        return 1

    async def main() -> list[warnings.WarningMessage]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert await anyio.to_thread.run_sync(lookup) == 1
            assert await anyio.to_thread.run_sync(lookup) == 1  # once per function
        return [w for w in seen if issubclass(w.category, motorpatch.PlainFallbackWarning)]

    caught = run_on("asyncio", main)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "lookup ran as plain blocking code on thread 'AnyIO worker thread'" in message
    assert "FastAPI and Starlette" in message
    assert "directly above @motorpatch.green" in message
    assert "motorpatch.allow_plain()" in message
    assert caught[0].filename == __file__  # where the function is defined


def test_allow_plain_silences_the_warning_in_a_worker_thread() -> None:
    @motorpatch.green
    def lookup() -> int:
        return 2

    async def main() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error", motorpatch.PlainFallbackWarning)
            assert await anyio.to_thread.run_sync(motorpatch.allow_plain()(lookup)) == 2

    run_on("asyncio", main)


def test_default_executor_warns() -> None:
    @motorpatch.green
    def lookup() -> int:
        return 3

    async def main() -> None:
        with pytest.warns(motorpatch.PlainFallbackWarning, match="default executor"):
            assert await asyncio.get_running_loop().run_in_executor(None, lookup) == 3

    run_on("asyncio", main)


def test_own_thread_next_to_a_loop_running_green_calls_warns_unless_allowed() -> None:
    @motorpatch.green
    def count() -> int:
        return 4

    @motorpatch.green
    def count_allowed() -> int:
        return 5

    def allowed() -> int:
        with motorpatch.allow_plain():
            return count_allowed()

    async def main() -> tuple[Any, Any]:
        assert await count() == 4  # this loop runs green calls
        loop = asyncio.get_running_loop()
        plain = await loop.run_in_executor(None, lambda: _on_thread(count))
        quiet = await loop.run_in_executor(None, lambda: _on_thread(allowed))
        return plain, quiet

    (value, caught), (quiet_value, quiet_caught) = run_on("asyncio", main)
    assert value == 4 and len(caught) == 1
    assert "thread 'report-thread'" in str(caught[0].message)
    assert quiet_value == 5 and quiet_caught == []


def test_no_warning_when_no_loop_is_running_anywhere() -> None:
    """A script, or a thread after the app's loop stopped: plain is the only way."""

    @motorpatch.green
    def lookup() -> int:
        return 6

    async def main() -> int:
        return await lookup()  # a loop ran green calls, then stopped

    assert run_on("asyncio", main) == 6
    value, caught = _on_thread(lookup)
    assert value == 6 and caught == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup() == 6


def test_allow_plain_is_scoped_to_its_block() -> None:
    @motorpatch.green
    def lookup() -> int:
        return 7

    async def main() -> list[warnings.WarningMessage]:
        def work() -> None:
            with motorpatch.allow_plain():
                lookup()
            lookup()  # after the block: the warning

        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            await anyio.to_thread.run_sync(work)
        return [w for w in seen if issubclass(w.category, motorpatch.PlainFallbackWarning)]

    assert len(run_on("asyncio", main)) == 1


def test_sync_to_async_worker_thread_warns_naming_django() -> None:
    """Django under ASGI runs a view it takes for sync through asgiref's sync_to_async."""
    from asgiref.sync import sync_to_async

    @motorpatch.green
    def lookup() -> int:
        return 8

    def plain_view() -> int:  # what Django would call: a sync view calling green code
        return lookup()

    async def main() -> None:
        with pytest.warns(motorpatch.PlainFallbackWarning, match="sync_to_async worker thread"):
            assert await sync_to_async(plain_view)() == 8

    run_on("asyncio", main)

"""The blocking-call detector: PyMongo on a running loop's thread, outside green code."""

from __future__ import annotations

import asyncio
import inspect
import threading
import warnings
from typing import Any

import pytest

import motorpatch
from motorpatch import BlockingCallWarning, GreenContextError
from tests.support.loops import run_on


def _call_on_loop(coll: Any) -> tuple[list[warnings.WarningMessage], int]:
    """find_one straight from a coroutine (blocking the loop); returns warnings and the line."""

    async def main() -> tuple[list[warnings.WarningMessage], int]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
            coll.find_one({})
        return caught, line

    return run_on("asyncio", main)


def test_warns_naming_the_callers_file_and_line(coll: Any) -> None:
    coll.insert_one({"x": 1})
    motorpatch.install()
    caught, line = _call_on_loop(coll)
    ours = [w for w in caught if issubclass(w.category, BlockingCallWarning)]
    assert ours, "no BlockingCallWarning for a PyMongo call on the loop thread"
    assert ours[0].filename == __file__
    assert ours[0].lineno == line
    assert f"{__file__}:{line}" in str(ours[0].message)
    assert "@motorpatch.green" in str(ours[0].message)


def test_raise_mode_raises_and_the_client_still_works(coll: Any) -> None:
    coll.insert_one({"x": 1})
    motorpatch.install(blocking="raise")

    async def main() -> None:
        with pytest.raises(GreenContextError, match="outside green code"):
            coll.find_one({})

    run_on("asyncio", main)
    assert coll.find_one({}, {"_id": 0}) == {"x": 1}  # no loop here: allowed


def test_ignore_mode_is_silent(coll: Any) -> None:
    motorpatch.install(blocking="ignore")
    caught, _ = _call_on_loop(coll)
    assert not [w for w in caught if issubclass(w.category, BlockingCallWarning)]


def test_no_warning_in_green_code_in_threads_or_without_a_loop(coll: Any) -> None:
    coll.insert_one({"x": 1})
    motorpatch.install(blocking="raise")  # any report would raise
    assert coll.find_one({}) is not None  # script-style, no loop

    @motorpatch.green
    def in_green() -> Any:
        return coll.find_one({})

    async def main() -> None:
        assert await in_green() is not None
        # A plain thread, while this thread's loop runs: it has no loop of its own.
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(coll.find_one({})))
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        assert result and result[0] is not None

    run_on("asyncio", main)


def test_changing_the_mode_by_installing_again(coll: Any) -> None:
    motorpatch.install(blocking="ignore")
    motorpatch.install(blocking="raise")

    async def main() -> None:
        with pytest.raises(GreenContextError):
            coll.find_one({})

    run_on("asyncio", main)

"""The greenlet <-> loop bridge: ``green``, ``await_``, contexts, exceptions, cancellation.

These tests need no database: they pin down the bridge's own contract on
every supported loop kind.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import traceback
from typing import Any

import pytest

import motorpatch
from motorpatch import GreenContextError
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@motorpatch.green
def add(a: int, b: int) -> int:
    return a + b


@motorpatch.green
def outer(x: int) -> int:
    # A green function calling another green function gets a plain value back.
    inner = add(x, 1)
    assert isinstance(inner, int)
    return inner * 2


def test_green_returns_awaitable_on_a_running_loop(loop_kind: str) -> None:
    async def main() -> tuple[Any, int]:
        pending = add(2, 3)
        return pending, await pending

    pending, value = run_on(loop_kind, main)
    assert asyncio.iscoroutine(pending)
    assert value == 5


def test_green_works_with_gather_and_wait_for(loop_kind: str) -> None:
    async def main() -> list[int]:
        results = await asyncio.gather(*[add(i, i) for i in range(10)])
        results.append(await asyncio.wait_for(add(1, 1), 5))
        return results

    assert run_on(loop_kind, main) == [*[2 * i for i in range(10)], 2]


def test_green_inside_green_runs_inline(loop_kind: str) -> None:
    async def main() -> int:
        return await outer(4)

    assert run_on(loop_kind, main) == 10


def test_green_without_a_loop_runs_synchronously() -> None:
    assert add(1, 2) == 3
    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(outer(1)))
    thread.start()
    thread.join()
    assert results == [4]


def test_green_rejects_coroutine_functions() -> None:
    async def handler() -> None:
        pass

    with pytest.raises(TypeError, match=r"already asynchronous \(async def\)"):
        motorpatch.green(handler)
    with pytest.raises(TypeError, match="expects a function"):
        motorpatch.green(42)  # type: ignore[arg-type]


def test_green_keeps_function_metadata() -> None:
    assert add.__name__ == "add"
    assert add.__wrapped__.__name__ == "add"  # type: ignore[attr-defined]


def test_green_decorates_methods() -> None:
    class Service:
        factor = 3

        @motorpatch.green
        def scale(self, x: int) -> int:
            return x * self.factor

    async def main() -> int:
        return await Service().scale(5)

    assert run_on("asyncio", main) == 15
    assert Service().scale(2) == 6


def test_await_inside_green_waits_on_the_loop(loop_kind: str) -> None:
    ticks: list[int] = []

    @motorpatch.green
    def slow() -> str:
        motorpatch.await_(asyncio.sleep(0.05))
        return motorpatch.await_(asyncio.sleep(0, result="done"))

    async def ticker() -> None:
        for i in range(5):
            ticks.append(i)
            await asyncio.sleep(0)

    async def main() -> str:
        result, _ = await asyncio.gather(slow(), ticker())
        return result

    assert run_on(loop_kind, main) == "done"
    assert ticks == [0, 1, 2, 3, 4]


def test_await_outside_green_raises_a_teaching_error() -> None:
    coro = asyncio.sleep(0)
    with pytest.raises(GreenContextError, match=r"decorated with @motorpatch.green") as info:
        motorpatch.await_(coro)
    assert isinstance(info.value, RuntimeError)
    assert coro.cr_frame is None  # closed: no "never awaited" warning on top

    async def main() -> None:
        motorpatch.await_(asyncio.sleep(0))  # on the loop, but not in green code

    with pytest.raises(GreenContextError):
        run_on("asyncio", main)


def test_await_propagates_the_awaitables_exception() -> None:
    async def fails() -> None:
        raise KeyError("from the loop")

    @motorpatch.green
    def call() -> None:
        motorpatch.await_(fails())

    async def main() -> None:
        await call()

    with pytest.raises(KeyError, match="from the loop"):
        run_on("asyncio", main)


class CustomError(Exception):
    pass


@motorpatch.green
def raises_deep() -> None:
    def helper_frame() -> None:
        raise CustomError("boom")

    motorpatch.await_(asyncio.sleep(0))
    helper_frame()


def test_exceptions_reach_the_awaiter_unchanged_with_green_frames(loop_kind: str) -> None:
    async def main() -> None:
        await raises_deep()

    with pytest.raises(CustomError, match="boom") as info:
        run_on(loop_kind, main)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "raises_deep" in frames and "helper_frame" in frames


def test_green_runs_in_a_copy_of_the_callers_context(loop_kind: str) -> None:
    @motorpatch.green
    def read_and_set() -> str:
        seen = request_id.get()
        request_id.set("changed-inside")
        motorpatch.await_(asyncio.sleep(0))
        assert request_id.get() == "changed-inside"
        return seen

    async def main() -> tuple[str, str]:
        request_id.set("req-42")
        seen = await read_and_set()
        return seen, request_id.get()

    seen, after = run_on(loop_kind, main)
    assert seen == "req-42"  # the caller's value is visible inside
    assert after == "req-42"  # changes inside do not leak out, as with a task


def test_cancellation_stops_green_code_at_its_wait_and_runs_finally(loop_kind: str) -> None:
    events: list[str] = []

    @motorpatch.green
    def waits_forever() -> None:
        try:
            events.append("waiting")
            motorpatch.await_(asyncio.Event().wait())
            events.append("unreachable")
        finally:
            events.append("finally")

    async def main() -> None:
        task = asyncio.ensure_future(waits_forever())
        while not events:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_on(loop_kind, main)
    assert events == ["waiting", "finally"]


def test_wait_for_timeout_cancels_green_code() -> None:
    cleaned = asyncio.Event()

    @motorpatch.green
    def slow() -> None:
        try:
            motorpatch.await_(asyncio.sleep(30))
        finally:
            cleaned.set()

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slow(), 0.05)
        assert cleaned.is_set()

    run_on("asyncio", main)


def test_green_before_install_warns_once() -> None:
    import motorpatch.bridge._green as bridge

    motorpatch.uninstall()
    bridge._warned_not_installed = False

    async def main() -> None:
        with pytest.warns(motorpatch.BlockingCallWarning, match=r"before motorpatch.install\(\)"):
            await add(1, 1)

    run_on("asyncio", main)


def test_a_loop_stopped_with_the_budget_spent_does_not_stall_the_next_loop() -> None:
    """The fairness budget's reset is scheduled on one loop; a new loop must not wait for it."""
    import motorpatch.bridge._fairness as fairness

    old_loop = asyncio.new_event_loop()
    old_loop.close()  # closed with its reset callback never run
    fairness.budget.spent = fairness.SLICE_BUDGET * 10
    fairness.budget.armed = old_loop

    @motorpatch.green
    def burn() -> str:
        return motorpatch.await_(asyncio.sleep(0, result="ran"))

    async def main() -> str:
        return await burn()

    assert run_on("asyncio", main, timeout=5) == "ran"
    assert fairness.budget.armed is not old_loop


def test_greenlets_that_keep_spending_the_budget_all_finish(loop_kind: str) -> None:
    """Deferred greenlets must re-arm the budget reset, or they spin in sleep(0) forever.

    Each greenlet spends more than the budget, then waits for all the others
    (a barrier): the ones already waiting cannot re-arm the reset for the rest.
    """
    import motorpatch.bridge._fairness as fairness

    n = 10
    arrived: list[int] = []

    @motorpatch.green
    def busy(i: int, everyone: asyncio.Event) -> int:
        motorpatch.await_(asyncio.sleep(0))
        end = time.perf_counter() + fairness.SLICE_BUDGET * 1.5
        while time.perf_counter() < end:  # CPU work, as a PyMongo operation does
            pass
        arrived.append(i)
        if len(arrived) == n:
            everyone.set()
        motorpatch.await_(everyone.wait())
        return i

    async def main() -> list[int]:
        everyone = asyncio.Event()
        return await asyncio.gather(*[busy(i, everyone) for i in range(n)])

    assert run_on(loop_kind, main, timeout=20) == list(range(n))

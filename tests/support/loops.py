"""Run a coroutine on each supported loop kind, with a hang guard, and measure loop lag."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import tornado.ioloop

T = TypeVar("T")

__all__ = ["LOOP_KINDS", "TEST_TIMEOUT", "LagTicker", "run_on"]

LOOP_KINDS = ("asyncio", "tornado", "uvloop")
# Like Tornado's ASYNC_TEST_TIMEOUT: a hang fails with a message instead of stalling CI.
TEST_TIMEOUT = float(os.environ.get("MOTORPATCH_TEST_TIMEOUT", "60"))


def run_on(kind: str, fn: Callable[[], Awaitable[T]], timeout: float = TEST_TIMEOUT) -> T:
    """Run ``fn()`` to completion on a fresh loop of ``kind``; fail after ``timeout`` s."""

    async def guarded() -> T:
        try:
            return await asyncio.wait_for(fn(), timeout)
        except TimeoutError:
            raise AssertionError(f"test coroutine hung for {timeout}s on the {kind} loop") from None

    if kind == "asyncio":
        return asyncio.run(guarded())
    if kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(guarded())
    if kind == "tornado":
        loop = tornado.ioloop.IOLoop(make_current=False)
        try:
            return loop.run_sync(guarded)  # type: ignore[no-any-return]
        finally:
            loop.close(all_fds=False)
    raise ValueError(kind)


class LagTicker:
    """Measures event-loop lag: how late a 1 ms timer fires, while other work runs."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[Any] | None = None
        self._start: float | None = None

    async def _tick(self) -> None:
        while True:
            self._start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(time.perf_counter() - self._start - self.interval)
            self._start = None

    def __enter__(self) -> LagTicker:
        self._task = asyncio.ensure_future(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        if self._start is not None:  # the tick in flight counts: the loop may be blocked now
            self.lags.append(max(0.0, time.perf_counter() - self._start - self.interval))

    @property
    def max(self) -> float:
        return max(self.lags, default=0.0)

    def percentile(self, p: float) -> float:
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def summary(self) -> str:
        """``loop lag p99 X ms, max Y ms``, for a test's printed measurement."""
        return f"loop lag p99 {self.percentile(99) * 1000:.1f} ms, max {self.max * 1000:.1f} ms"

"""The fairness budget's queue: deferred calls start in arrival order, none is lost.

Once green code has spent the slice budget in a loop iteration, new and
resumed calls queue; each reset wakes the next batch. These tests need no
database: the green work is CPU burnt inside the greenlet.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

import motorpatch
from motorpatch.bridge import _fairness
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # CPU work, as a PyMongo operation does
        pass


@pytest.mark.parametrize("estimate", [1e-5, None, 0.01], ids=["overshoot", "as-is", "one-by-one"])
def test_deferred_calls_start_in_the_order_they_arrived(
    loop_kind: str, estimate: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In order whatever the batch size: a batch woken too large puts its extra callers
    back at the head in their order; one too small just takes more iterations."""
    if estimate is not None:  # the running estimate of a resume's cost sizes each batch
        monkeypatch.setattr(_fairness.budget, "per_resume", estimate)
        # As if many cheap resumes had run since the last reset (other code on this thread).
        monkeypatch.setattr(_fairness.budget, "resumes", 10**6 if estimate < 1e-3 else 1)
    started: list[int] = []

    @motorpatch.green
    def work(i: int) -> int:
        started.append(i)
        _burn(_fairness.SLICE_BUDGET / 2)  # two calls spend a slice
        return i

    async def main() -> list[int]:
        return await asyncio.gather(*[work(i) for i in range(40)])

    deferrals = motorpatch.stats()["budget"]["deferrals"]
    assert run_on(loop_kind, main) == list(range(40))
    assert started == list(range(40))
    # Most calls waited for a later slice, and each waited once: no re-polling.
    waited = motorpatch.stats()["budget"]["deferrals"] - deferrals
    assert 30 <= waited <= 40


def test_a_cancelled_deferred_call_leaves_the_queue_and_the_others_run(loop_kind: str) -> None:
    @motorpatch.green
    def work(i: int) -> int:
        _burn(_fairness.SLICE_BUDGET * 1.5)  # each call spends a whole slice
        return i

    async def main() -> tuple[list[int], bool]:
        calls = [asyncio.ensure_future(work(i)) for i in range(6)]
        await asyncio.sleep(0)  # all six have started or queued
        calls[3].cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        done = [r for r in results if isinstance(r, int)]
        return done, isinstance(results[3], asyncio.CancelledError)

    done, cancelled = run_on(loop_kind, main, timeout=20)
    assert done == [0, 1, 2, 4, 5]
    assert cancelled
    assert not any(_fairness.budget.waiting.values())


def test_a_deferred_call_waits_for_the_loop_to_serve_a_timer(loop_kind: str) -> None:
    """Between two slices the loop runs its due timers: a 1 ms ticker keeps ticking."""
    ticks: list[float] = []

    @motorpatch.green
    def work() -> None:
        _burn(_fairness.SLICE_BUDGET)

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.001)

    async def main() -> None:
        stop = asyncio.Event()
        ticking = asyncio.ensure_future(ticker(stop))
        await asyncio.sleep(0.005)
        await asyncio.gather(*[work() for _ in range(200)])  # about 400 ms of green work
        stop.set()
        await ticking

    run_on(loop_kind, main, timeout=30)
    # Without slices the 200 calls would run back to back in one iteration (~400 ms with
    # no tick); with them the ticker keeps firing throughout.
    assert len(ticks) >= 80
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.2


def test_a_call_queued_before_it_started_is_in_flight(loop_kind: str) -> None:
    """A call deferred before its first slice has not run a line yet, but it will: it is in
    flight for stats() (parked as "yield") and uninstall() refuses, since unpatched it would
    block the loop once it runs. Cancelled while queued, it leaves nothing busy."""

    @motorpatch.green
    def work(i: int) -> int:
        _burn(_fairness.SLICE_BUDGET * 1.5)  # each call spends a whole slice
        return i

    async def main() -> tuple[dict[str, object], str, list[object], int]:
        calls = [asyncio.ensure_future(work(i)) for i in range(3)]
        await asyncio.sleep(0)  # the first ran and spent the slice; the other two queued
        snap = motorpatch.stats()
        try:
            motorpatch.uninstall()
            refused = ""
        except RuntimeError as exc:
            refused = str(exc)
        calls[2].cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        return snap, refused, results, motorpatch.stats()["in_flight"]  # type: ignore[return-value]

    snap, refused, results, left = run_on(loop_kind, main, timeout=20)
    assert snap["in_flight"] == 2
    assert snap["parked"]["yield"] == 2  # type: ignore[index]
    assert "2 green call(s) are in flight" in refused
    assert motorpatch.is_installed()
    assert results[:2] == [0, 1] and isinstance(results[2], asyncio.CancelledError)
    assert left == 0, "the cancelled call's greenlet is still busy"

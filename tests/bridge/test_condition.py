"""Parking on a ``threading.Condition``: any thread wakes a green waiter, no wake-up is lost.

No database: a plain ``threading.Condition`` stands for PyMongo's pool and
topology conditions (the patches' own tests run the same waits against a
server, tests/patches/test_pool.py and test_topology.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import motorpatch
from motorpatch.bridge import green_cond_wait, green_loop, pending_handoffs
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")


def _wait(cond: threading.Condition, timeout: float | None) -> bool:
    loop = green_loop()
    assert loop is not None
    with cond:
        notified = green_cond_wait(loop, cond, timeout)
        assert cond._is_owned()  # type: ignore[attr-defined]  # re-acquired, as wait() does
        return notified


def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the expected state was never reached"
        time.sleep(0.001)


def test_a_plain_thread_notify_wakes_a_green_waiter_on_an_idle_loop(loop_kind: str) -> None:
    cond = threading.Condition()
    waiting = threading.Event()

    def notifier() -> None:
        assert waiting.wait(10)
        _until(lambda: len(cond._waiters) == 1)  # type: ignore[attr-defined]
        with cond:
            cond.notify()

    @motorpatch.green
    def waiter() -> tuple[bool, float]:
        waiting.set()
        start = time.perf_counter()
        return _wait(cond, 30), time.perf_counter() - start

    thread = threading.Thread(target=notifier)
    thread.start()
    notified, waited = run_on(loop_kind, waiter, timeout=30)
    thread.join(10)
    assert notified and waited < 5
    assert cond._waiters == type(cond._waiters)()  # type: ignore[attr-defined]


def test_a_timed_out_green_wait_returns_false_and_leaves_the_waiter_list() -> None:
    cond = threading.Condition()

    @motorpatch.green
    def waiter() -> tuple[bool, int]:
        return _wait(cond, 0.05), len(cond._waiters)  # type: ignore[attr-defined]

    assert run_on("asyncio", waiter, timeout=30) == (False, 0)


def test_waiting_without_the_lock_is_refused_as_wait_refuses_it() -> None:
    cond = threading.Condition()

    @motorpatch.green
    def waiter() -> None:
        loop = green_loop()
        assert loop is not None
        green_cond_wait(loop, cond, 1)

    with pytest.raises(RuntimeError, match="cannot wait on un-acquired lock"):
        run_on("asyncio", waiter, timeout=30)


def test_a_waiter_cancelled_after_notify_chose_it_passes_the_wake_up_on() -> None:
    """notify(1) picks `first`, whose cancellation is already queued (it reaches the greenlet
    before the wake-up does): `second` must be woken, not left to its timeout."""
    cond = threading.Condition()

    async def main() -> dict[str, Any]:
        first = asyncio.ensure_future(motorpatch.green(_wait)(cond, 30))
        while len(cond._waiters) < 1:  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)
        second = asyncio.ensure_future(motorpatch.green(_wait)(cond, 30))
        while len(cond._waiters) < 2:  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)
        first.cancel()  # its cancellation is queued first...
        with cond:
            cond.notify(1)  # ...then the wake-up notify() hands it
            promised = pending_handoffs(cond)
        out = {"promised": promised, "second": await asyncio.wait_for(second, 10)}
        out["first_cancelled"] = (await asyncio.gather(first, return_exceptions=True))[0]
        out["left"] = (len(cond._waiters), pending_handoffs(cond))  # type: ignore[attr-defined]
        return out

    out = run_on("asyncio", main, timeout=30)
    assert out["promised"] == 1
    assert out["second"] is True
    assert isinstance(out["first_cancelled"], asyncio.CancelledError)
    assert out["left"] == (0, 0)


def test_a_waiter_on_a_closed_loop_does_not_swallow_the_wake_up() -> None:
    """A green waiter abandoned on a loop closed without cancelling it: the next notify()
    goes to the plain thread queued behind it."""
    cond = threading.Condition()
    loop = asyncio.new_event_loop()
    abandoned: list[Any] = []

    async def park_one() -> None:
        abandoned.append(asyncio.ensure_future(motorpatch.green(_wait)(cond, None)))
        while len(cond._waiters) < 1:  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)

    loop.run_until_complete(park_one())
    loop.close()
    woken: list[bool] = []

    def plain() -> None:
        with cond:
            woken.append(cond.wait(10))

    thread = threading.Thread(target=plain)
    thread.start()
    _until(lambda: len(cond._waiters) == 2)  # type: ignore[attr-defined]
    with cond:
        cond.notify(1)
    thread.join(15)
    assert woken == [True]
    assert pending_handoffs(cond) == 0  # a promise to a closed loop's waiter does not count

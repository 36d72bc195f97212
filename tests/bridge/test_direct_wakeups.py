"""The bridge's hot path: greenlets reused from a per-thread pool, and direct wake-ups.

A socket wait is resumed by the loop's own reader/timer callback, which
switches straight into the parked greenlet; the driving coroutine hears of it
only when the call ends or needs a real ``await``. These tests pin down what
that must not change: results, exceptions, contexts, cancellation, and that
no greenlet is resumed twice or kept past its call.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import greenlet
import pytest

import motorpatch
import motorpatch.bridge._greenlets as greenlets
import motorpatch.bridge._parking as parking
from motorpatch.socket_shim import wait_fd
from tests.support.greenlets import live_greenlets
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def _pooled_greenlets() -> list[Any]:
    """motorpatch's green greenlets alive now, busy or idle in the pool."""
    return [g for g in live_greenlets() if hasattr(g, "motorpatch_busy")]


def _busy() -> set[int]:
    """Green greenlets running a call now (earlier tests may leave some on closed loops)."""
    return {id(g) for g in _pooled_greenlets() if g.motorpatch_busy}


def test_a_finished_call_s_greenlet_serves_the_next_call_with_a_fresh_context(
    loop_kind: str,
) -> None:
    @motorpatch.green
    def first() -> Any:
        seen.set("first call")
        return greenlet.getcurrent()

    @motorpatch.green
    def second() -> tuple[Any, str]:
        return greenlet.getcurrent(), seen.get()

    async def main() -> tuple[Any, Any, str]:
        one = await first()
        two, value = await second()
        return one, two, value

    one, two, value = run_on(loop_kind, main)
    assert one is two  # reused, not created again
    assert value == "unset"  # the first call's context did not travel with its greenlet
    assert one.motorpatch_busy is False


def test_a_reused_greenlet_raises_the_new_call_s_exception_with_its_traceback(
    loop_kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair

    @motorpatch.green
    def fails_after_a_wait(n: int) -> None:
        wait_fd(a.fileno(), write=False, timeout=5)
        a.recv(1)
        raise ValueError(f"call {n} failed")

    async def main() -> list[str]:
        messages = []
        for n in range(3):
            asyncio.get_running_loop().call_later(0.01, b.send, b"x")
            try:
                await fails_after_a_wait(n)
            except ValueError as exc:
                assert "fails_after_a_wait" in "".join(traceback.format_tb(exc.__traceback__))
                messages.append(str(exc))
        return messages

    assert run_on(loop_kind, main) == ["call 0 failed", "call 1 failed", "call 2 failed"]


def test_await_after_a_direct_wake_up_goes_through_the_driving_coroutine(
    loop_kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair

    @motorpatch.green
    def read_sleep_read() -> list[Any]:
        got = []
        for _ in range(2):
            assert wait_fd(a.fileno(), write=False, timeout=5)
            got.append(a.recv(1))
            # Resumed by the reader callback, now awaiting a real coroutine:
            got.append(motorpatch.await_(asyncio.sleep(0.01, result="slept")))
        return got

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, b.send, b"1")
        loop.call_later(0.05, b.send, b"2")
        return await read_sleep_read()

    assert run_on(loop_kind, main) == [b"1", "slept", b"2", "slept"]


def test_a_spent_wake_up_never_resumes_the_greenlet_again(
    loop_kind: str, pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wake-up that fires late (its wait is over) must not switch into the greenlet."""
    a, b = pair
    wakers: list[Any] = []
    real_waker = parking.new_waker

    def keep(*args: Any) -> Any:
        wakers.append(real_waker(*args))
        return wakers[-1]

    monkeypatch.setattr("motorpatch.socket_shim._wait.new_waker", keep)

    @motorpatch.green
    def read_twice() -> list[bytes]:
        got = []
        for _ in range(2):
            assert wait_fd(a.fileno(), write=False, timeout=5)
            got.append(a.recv(1))
        return got

    async def main() -> list[bytes]:
        b.send(b"x")
        pending = asyncio.ensure_future(read_twice())
        while len(wakers) < 2:  # parked in its second wait, on a new waker
            await asyncio.sleep(0.001)
        wakers[0](True)  # the first wait is over: this must not wake the second
        await asyncio.sleep(0.01)
        assert wakers[1].gl.motorpatch_parked == "socket read"
        assert not pending.done()
        b.send(b"y")
        return await pending

    assert run_on(loop_kind, main) == [b"x", b"y"]
    assert len(wakers) == 2


def test_cancelled_as_it_finishes_a_call_raises_cancelled_and_frees_its_greenlet(
    loop_kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    """The reader callback finishes the call, then the task is cancelled before it runs.

    On asyncio's loop (and Tornado's, which is asyncio's) the cancellation is
    queued ahead of the task's wake-up, so it lands on a call that has already
    finished. uvloop orders its callbacks otherwise and may let the task see
    its result first; either way the greenlet must be freed exactly once.
    """
    a, b = pair
    finished: list[str] = []
    busy_before = _busy()

    @motorpatch.green
    def read_one(cancel_me: list[asyncio.Future[Any]]) -> bytes:
        assert wait_fd(a.fileno(), write=False, timeout=5)
        asyncio.get_running_loop().call_soon(cancel_me[0].cancel)
        finished.append("body ran to its end")
        return a.recv(1)

    def read_again() -> tuple[bool, bytes]:
        return wait_fd(a.fileno(), write=False, timeout=5), a.recv(1)

    async def main() -> tuple[str, Any]:
        holder: list[asyncio.Future[Any]] = []
        holder.append(asyncio.ensure_future(read_one(holder)))
        while motorpatch.stats()["parked"]["socket read"] == 0:  # parked on the empty socket
            await asyncio.sleep(0)
        b.send(b"x")
        try:
            outcome = repr(await holder[0])
        except asyncio.CancelledError:
            outcome = "cancelled"
        # The greenlet went back to the pool and serves the next call normally.
        b.send(b"y")
        return outcome, await motorpatch.green(read_again)()

    outcome, again = run_on(loop_kind, main)
    assert outcome == "cancelled" if loop_kind != "uvloop" else outcome in ("cancelled", "b'x'")
    assert again == (True, b"y")
    assert finished == ["body ran to its end"]
    assert _busy() <= busy_before


def test_cancelling_a_direct_wait_disarms_it_and_runs_the_greenlet_s_cleanup(
    loop_kind: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    cleaned: list[str] = []
    busy_before = _busy()

    @motorpatch.green
    def wait_forever() -> None:
        try:
            wait_fd(a.fileno(), write=False, timeout=None)
        finally:
            cleaned.append("finally ran")

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(wait_forever(), 0.05)
        b.send(b"late data")  # would wake the old wait if it were still armed
        await asyncio.sleep(0.02)

    run_on(loop_kind, main)
    assert cleaned == ["finally ran"]
    assert _busy() <= busy_before


def test_the_pool_is_bounded_and_a_finished_thread_s_pool_is_freed() -> None:
    @motorpatch.green
    def short() -> int:
        motorpatch.await_(asyncio.sleep(0.001))
        return 1

    async def burst() -> int:
        return sum(await asyncio.gather(*[short() for _ in range(3 * greenlets._POOL_MAX)]))

    before = len(_pooled_greenlets())
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(asyncio.run(burst())))
    worker.start()
    worker.join()
    assert results == [3 * greenlets._POOL_MAX]
    assert len(_pooled_greenlets()) == before  # the thread's idle greenlets went with it

    assert asyncio.run(burst()) == 3 * greenlets._POOL_MAX
    idle = [g for g in _pooled_greenlets() if not g.motorpatch_busy]
    assert len(idle) == greenlets._POOL_MAX  # this thread keeps a full pool, no more


@pytest.mark.parametrize("kind", ["asyncio", "tornado"])
def test_a_deferred_wake_up_unregisters_its_descriptor(kind: str) -> None:
    """40 greenlets parked on reads become readable at once; each then runs half the
    fairness budget, so most wake-ups are deferred to later loop iterations. A deferred
    greenlet's descriptor stays readable until it reads: were it still registered, every
    iteration's select() would report it again (and call its spent waker) until its turn,
    about 400 reports here. Each is reported about once. (asyncio's selector is counted;
    Tornado runs on it.)"""
    n = 40
    pairs = [socket.socketpair() for _ in range(n)]
    for a, _ in pairs:
        a.setblocking(False)
    reported = [0]

    def burn(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    @motorpatch.green
    def read(a: socket.socket) -> bytes:
        assert wait_fd(a.fileno(), write=False, timeout=10)
        burn(motorpatch.bridge.SLICE_BUDGET / 2)
        return a.recv(1)

    async def main() -> list[bytes]:
        selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        real = selector.select

        def counting(timeout: float | None = None) -> Any:
            ready = real(timeout)
            reported[0] += len(ready)
            return ready

        calls = [asyncio.ensure_future(read(a)) for a, _ in pairs]
        while motorpatch.stats()["parked"]["socket read"] < n:
            await asyncio.sleep(0.001)
        selector.select = counting
        try:
            for _, b in pairs:
                b.send(b"x")
            return await asyncio.gather(*calls)
        finally:
            del selector.select

    deferrals = motorpatch.stats()["budget"]["deferrals"]
    try:
        assert run_on(kind, main, timeout=30) == [b"x"] * n
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    assert motorpatch.stats()["budget"]["deferrals"] - deferrals >= n // 2
    assert reported[0] <= 2 * n, f"{reported[0]} readiness reports for {n} reads"

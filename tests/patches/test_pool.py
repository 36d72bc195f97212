"""The pool patches: maxPoolSize and maxConnecting waits park, start-up sockets, timeouts, fairness.

Real nx-27017 behind the loopback fault proxy (its ``delay`` makes every reply
slow, so callers really queue). Where an unpatched wait would block the loop's
thread for good, ``waitQueueTimeoutMS`` bounds it, so a regression fails with an
error instead of hanging the run (``run_on``'s timeout cannot fire on a blocked
loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import socket
import threading
import time
from typing import Any

import greenlet
import pytest
from pymongo import monitoring
from pymongo.errors import WaitQueueTimeoutError
from pymongo.read_preferences import ReadPreference
from pymongo.synchronous.pool import Pool

import motorpatch
from motorpatch.socket_shim import GreenSocket
from tests.support.loops import LagTicker, run_on
from tests.support.pymongo_compat import VERSION, pooled_socket

pytestmark = pytest.mark.usefixtures("installed")

N_DOCS = 10


def _pool(client: Any) -> Any:
    """The client's connection pool for its one server, selected in plain code (call it
    before the loop starts): the topology is opened, no application connection made."""
    return client._get_topology().select_server(ReadPreference.PRIMARY, "motorpatch-test").pool


# Releases without PyMongo's fix for counters after a failed checkout (PYTHON-6136; e.g.
# 4.12) leave operation_count raised after a wait-queue timeout, in plain code as well.
_RESTORES_OPERATION_COUNT = hasattr(Pool, "_restore_counters")


def _busy(pool: Any) -> dict[str, int]:
    """The pool's non-zero checkout counters and waiter lists: {} when nothing is in flight."""
    state = {name: getattr(pool, name) for name in ("requests", "active_sockets", "_pending")}
    state["operation_count"] = pool.operation_count
    state["size_waiters"] = len(pool.size_cond._waiters)
    state["connecting_waiters"] = len(pool._max_connecting_cond._waiters)
    if not _RESTORES_OPERATION_COUNT:
        del state["operation_count"]
    return {name: value for name, value in state.items() if value}


def _expected(n: int) -> list[str]:
    return [f"doc-{i % N_DOCS}" for i in range(n)]


def test_max_pool_size_one_serves_fifty_green_calls(loop_kind, one_slot):
    pool, get, proxy = one_slot.pool, one_slot.get, one_slot.proxy
    n, delay = 50, 0.02
    peak = {"waiting": 0}

    async def main() -> tuple[list[str], float, LagTicker]:
        proxy.delay = delay
        with LagTicker() as ticker:
            start = time.perf_counter()
            calls = asyncio.gather(*[get(i) for i in range(n)])
            while not calls.done():
                peak["waiting"] = max(peak["waiting"], len(pool.size_cond._waiters))
                await asyncio.sleep(0.005)
            return calls.result(), time.perf_counter() - start, ticker

    results, elapsed, ticker = run_on(loop_kind, main, timeout=30)
    assert results == _expected(n)
    assert one_slot.cmap.of(monitoring.ConnectionCreatedEvent) == []  # still the one
    assert peak["waiting"] >= n - 5, "the calls never queued for the single connection"
    assert elapsed >= n * delay  # one connection: the replies really were serial
    assert len(ticker.lags) > elapsed / 0.01 and ticker.max < 0.1, (
        f"loop stalled: max lag {ticker.max:.3f}s over {len(ticker.lags)} ticks"
    )
    assert _busy(pool) == {}


def test_max_connecting_storm_on_a_fresh_client(loop_kind, proxy, proxied, recorder, getter):
    """50 greenlets need a new connection at once; only 2 may be in set-up (maxConnecting)."""
    cmap = recorder("pool")
    pc = proxied(waitQueueTimeoutMS=10000, event_listeners=[cmap])
    pool = _pool(pc.database.client)  # opens the topology; no application connection yet
    assert len(pool.conns) == 0 and pool._max_connecting == 2
    get = getter(pc)
    n = 50
    peak = {"waiting": 0, "pending": 0}

    async def main() -> tuple[list[str], LagTicker]:
        proxy.delay = 0.05  # every handshake (hello) and every reply takes 50 ms
        with LagTicker() as ticker:
            calls = asyncio.gather(*[get(i) for i in range(n)])
            while not calls.done():
                peak["waiting"] = max(peak["waiting"], len(pool._max_connecting_cond._waiters))
                peak["pending"] = max(peak["pending"], pool._pending)
                await asyncio.sleep(0.002)
            return calls.result(), ticker

    results, ticker = run_on(loop_kind, main, timeout=30)
    assert results == _expected(n)
    assert peak["waiting"] >= 10, "the storm never reached the maxConnecting wait"
    assert peak["pending"] <= 2
    assert len(cmap.of(monitoring.ConnectionCreatedEvent)) >= 3
    assert ticker.max < 0.1, f"loop stalled for {ticker.max:.3f}s"
    assert _busy(pool) == {}


def test_start_up_plain_sockets_become_green_and_still_serve_threads(proxy, proxied, getter):
    """Sockets made by plain start-up code are wrapped on green checkout, never block the loop."""
    pc = proxied()
    client = pc.database.client
    n, delay = 8, 0.1
    # Start-up code, before any loop runs: a ping, a find, and n connections in use at once.
    client.admin.command("ping")
    assert pc.find_one({"i": 1})["tag"] == "doc-1"
    pool = _pool(client)
    with contextlib.ExitStack() as stack:
        for _ in range(n):
            stack.enter_context(pool.checkout())
    plain = list(pool.conns)
    assert len(plain) == n
    assert all(type(pooled_socket(c)) is socket.socket for c in plain)
    get = getter(pc)

    async def main() -> tuple[list[str], float, LagTicker]:
        proxy.delay = delay
        with LagTicker() as ticker:
            start = time.perf_counter()
            results = await asyncio.gather(*[get(i) for i in range(n)])
            return results, time.perf_counter() - start, ticker

    results, elapsed, ticker = run_on("asyncio", main, timeout=30)
    assert results == _expected(n)
    assert elapsed < n * delay / 3, f"{n} calls took {elapsed:.2f}s: start-up sockets serialised"
    assert ticker.max < delay / 2, f"the loop stalled for {ticker.max:.3f}s on a plain socket"
    assert {id(c) for c in pool.conns} == {id(c) for c in plain}, "connections were replaced"
    assert all(type(pooled_socket(c)) is GreenSocket for c in pool.conns)

    # The loop has stopped: plain threads use the same (now green-wrapped) connections.
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        later = list(executor.map(lambda i: pc.find_one({"i": i})["tag"], range(4), timeout=30))
    assert later == _expected(4)
    assert _busy(pool) == {}


def _first_find_started(events: Any, hook: Any) -> None:
    events.on(monitoring.CommandStartedEvent, lambda e: e.command_name == "find" and hook())


def test_wait_queue_timeout_raises_what_plain_pymongo_raises(proxy, proxied, recorder, getter):
    opts = {"maxPoolSize": 1, "waitQueueTimeoutMS": 250}
    # The holder's reply: past the time plain PyMongo waits before it raises (on 4.20 a
    # retried read: two checkouts of 250 ms), and past twice that, so a green checkout
    # that queued first and then waited PyMongo's own timeout again would show.
    delay = 1.3
    plain_commands, commands = recorder("command"), recorder("command")
    plain_pc = proxied(event_listeners=[plain_commands], **opts)
    pc = proxied(event_listeners=[commands], **opts)
    pool = _pool(pc.database.client)
    for c in (plain_pc, pc):  # warm: server selected, the one connection made
        assert c.find_one({"i": 0})["tag"] == "doc-0"
    proxy.delay = delay

    # Plain threads, as a reference: one holds the connection, the other waits 200 ms.
    holding = threading.Event()
    _first_find_started(plain_commands, holding.set)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        holder = executor.submit(plain_pc.find_one, {"i": 0})
        assert holding.wait(10)
        start = time.perf_counter()
        try:
            plain_pc.find_one({"i": 1})
            plain_error: BaseException | None = None
        except Exception as exc:  # the class is compared below
            plain_error = exc
        plain_waited = time.perf_counter() - start
        assert holder.result(10)["tag"] == "doc-0"

    # The same situation in green code.
    get = getter(pc)

    async def main() -> tuple[BaseException | None, float, str, LagTicker]:
        holding = asyncio.Event()
        _first_find_started(commands, holding.set)
        with LagTicker() as ticker:
            holder = asyncio.ensure_future(get(0))
            await holding.wait()
            start = time.perf_counter()
            try:
                await get(1)
                error = None
            except Exception as exc:
                error = exc
            waited = time.perf_counter() - start
            held = await holder
        return error, waited, held, ticker

    error, waited, held, ticker = run_on("asyncio", main, timeout=30)
    assert type(error) is type(plain_error)
    if VERSION >= (4, 11):
        assert type(plain_error) is WaitQueueTimeoutError
        assert plain_waited < delay - 0.2, f"plain PyMongo raised after {plain_waited:.3f}s"
        assert abs(waited - plain_waited) < 0.2, (
            f"the wait-queue timeout fired after {waited:.3f}s, {plain_waited:.3f}s in plain code"
        )
    else:  # PyMongo 4.9-4.10 themselves let this checkout wait for the connection
        assert plain_error is None
    assert held == "doc-0"
    assert ticker.max < 0.1, f"loop stalled for {ticker.max:.3f}s"
    assert _busy(pool) == {}
    proxy.delay = 0.0
    get = getter(pc)  # the previous one failed (fail-fast) on purpose
    later = run_on("asyncio", lambda: asyncio.gather(get(2), get(3)), timeout=30)
    assert later == ["doc-2", "doc-3"]
    assert _busy(pool) == {}


def test_plain_thread_checkin_wakes_a_greenlet_parked_on_an_idle_loop(one_slot):
    """The notify() comes from another thread while the loop sleeps with no timer due for
    seconds (no ticker here): the wake-up must reach the loop thread-safely, at once."""
    delay = one_slot.proxy.delay = 0.5
    holding = threading.Event()
    _first_find_started(one_slot.commands, holding.set)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        holder = executor.submit(one_slot.pc.find_one, {"i": 0})  # a plain thread holds it
        assert holding.wait(10)

        async def main() -> tuple[str, float]:
            start = time.perf_counter()
            return await one_slot.get(1), time.perf_counter() - start

        result, elapsed = run_on("asyncio", main, timeout=30)
        assert holder.result(10)["tag"] == "doc-0"
    assert result == "doc-1"
    out, back = "CheckOutStarted", "CheckedOut"  # the thread, then the greenlet, in turn
    kinds = [type(e).__name__[len("Connection") : -len("Event")] for _, e in one_slot.cmap.events]
    assert kinds == [out, back, out, "CheckedIn", back, "CheckedIn"]
    assert elapsed < 2 * delay + 0.5, f"woken {elapsed:.2f}s later: the wake-up was not seen"
    assert _busy(one_slot.pool) == {}


def test_fairness_no_greenlet_barges_past_the_woken_waiter(
    loop_kind, make_client, seeded, fail_fast
):
    """maxPoolSize=1, 10 greenlets each looping: the slot goes round them in strict turn."""
    client = make_client(maxPoolSize=1, waitQueueTimeoutMS=10000)
    pc = client[seeded.database.name][seeded.name]
    pool = _pool(client)
    workers, k = 10, 15
    order: list[int] = []

    find = fail_fast(lambda j: pc.find_one({"i": j % N_DOCS})["i"])

    @motorpatch.green
    def work(w: int) -> None:
        for j in range(k):
            assert find(j) == j % N_DOCS
            order.append(w)

    run_on(loop_kind, lambda: asyncio.gather(*[work(w) for w in range(workers)]), timeout=30)
    assert sorted(order) == sorted(list(range(workers)) * k)
    # FIFO hand-over: once a worker is queued, it completes exactly once every `workers`
    # operations. When a looping greenlet barges back in, the others wait for all its `k`
    # operations in a row (a gap of (workers - 1) * k + 1 = 136); a greenlet queued ahead
    # of the woken waiter taking its slot shows as gaps of 11 to 50. Only the first
    # operation of each worker may come later: under load a worker's first call can start
    # after others have already looped (allowed up to 3 rounds).
    for w in range(workers):
        positions = [p for p, who in enumerate(order) if who == w]
        assert positions[0] < 3 * workers, f"worker {w} started late: {order}"
        worst = max(b - a for a, b in itertools.pairwise(positions))
        assert worst <= workers, f"worker {w} waited {worst} operations: {order}"
    assert _busy(pool) == {}


@pytest.mark.parametrize("when", ["parked", "notified"])
def test_cancelling_a_slot_waiter_loses_no_slot(when, loop_kind, one_slot):
    """A holder has the only slot; `first` then `second` park for it. Cancel `first` while
    parked ("parked"), or from inside the holder's checkin just after notify() chose it
    ("notified"): either way `second` gets the slot, and the counters return to 0."""
    pool, get, cmap = one_slot.pool, one_slot.get, one_slot.cmap

    async def main() -> dict[str, Any]:
        parked = asyncio.Queue()  # one entry each time a checkout has parked (or holds the slot)
        cmap.on(monitoring.ConnectionCheckOutStartedEvent, parked.put_nowait)
        one_slot.proxy.delay = 0.2
        holder = asyncio.ensure_future(get(0))
        await parked.get()
        first = asyncio.ensure_future(get(1))
        await parked.get()  # returns once `first` has run up to its park in the size wait
        second = asyncio.ensure_future(get(2))
        await parked.get()
        waiting = len(pool.size_cond._waiters)
        if when == "parked":
            first.cancel()
        else:  # cancel `first` from inside the holder's checkin, right after notify() chose it
            cmap.on(monitoring.ConnectionCheckedInEvent, lambda e: first.cancel())
        outcome = {"waiting": waiting, "holder": await holder}
        handed_over = time.perf_counter()
        outcome["second"] = await second
        outcome["second_waited"] = time.perf_counter() - handed_over  # its find: 0.2 s
        with contextlib.suppress(asyncio.CancelledError):
            await first
        outcome["first_cancelled"] = first.cancelled()
        outcome["busy"] = _busy(pool)
        one_slot.proxy.delay = 0.0
        outcome["more"] = await asyncio.gather(*[get(i) for i in range(5)])
        return outcome

    outcome = run_on(loop_kind, main, timeout=30)
    assert outcome["waiting"] == 2
    assert outcome["holder"] == "doc-0" and outcome["second"] == "doc-2"
    assert outcome["first_cancelled"]
    assert outcome["second_waited"] < 2.0, "the slot reached `second` only at its timeout"
    assert outcome["busy"] == {}
    assert outcome["more"] == _expected(5)
    assert _busy(pool) == {}


# -- waiters on a loop that was closed -------------------------------------------------------


def _until(predicate: Any, timeout: float = 10.0) -> None:
    """Return once ``predicate()`` is true (checked every millisecond); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the expected state was never reached"
        time.sleep(0.001)


def test_a_waiter_on_a_closed_loop_passes_the_wake_up_on(one_slot):
    """A green call parked for the only slot on a loop closed without cancelling it (a
    known limit: it never resumes) must not swallow the next checkin's notify(): the plain
    thread queued behind it gets the slot at once, not after its wait-queue timeout."""
    pool, pc, cmap, proxy = one_slot.pool, one_slot.pc, one_slot.cmap, one_slot.proxy
    proxy.delay = 0.3
    holding = threading.Event()
    _first_find_started(one_slot.commands, holding.set)
    with concurrent.futures.ThreadPoolExecutor(2) as executor:
        holder = executor.submit(pc.find_one, {"i": 0})  # a plain thread holds the slot
        assert holding.wait(10)
        loop = asyncio.new_event_loop()
        abandoned: list[Any] = []

        async def park_one() -> None:
            abandoned.append(asyncio.ensure_future(one_slot.get(1)))
            while len(pool.size_cond._waiters) < 1:
                await asyncio.sleep(0.001)

        loop.run_until_complete(park_one())
        loop.close()  # as an app's shutdown might, without cancelling the parked call
        behind = executor.submit(pc.find_one, {"i": 2})  # queues behind the abandoned waiter
        _until(lambda: len(pool.size_cond._waiters) == 2)
        assert holder.result(10)["tag"] == "doc-0"
        assert behind.result(10)["tag"] == "doc-2"
    failed = cmap.of(monitoring.ConnectionCheckOutFailedEvent)
    assert failed == [], "the checkin's wake-up went to the closed loop's waiter"
    proxy.delay = 0.0


def test_a_slot_promised_to_a_waiter_whose_loop_closed_is_not_held_back(one_slot):
    """The holder's checkin notifies a parked green waiter, then its loop stops and closes
    before the waiter runs. That promise must not make later checkouts queue for ever."""
    pool, get, cmap, proxy = one_slot.pool, one_slot.get, one_slot.cmap, one_slot.proxy
    loop = asyncio.new_event_loop()
    # Stop the loop from inside the holder's checkin, after notify() chose the waiter.
    cmap.on(monitoring.ConnectionCheckedInEvent, lambda e: loop.stop())

    abandoned: list[Any] = []

    async def hold_and_park() -> None:
        proxy.delay = 0.2
        abandoned.append(asyncio.ensure_future(get(0)))
        while pool.requests < 1:
            await asyncio.sleep(0.001)
        abandoned.append(asyncio.ensure_future(get(1)))
        await asyncio.Event().wait()  # until loop.stop()

    with contextlib.suppress(RuntimeError):  # "Event loop stopped before Future completed."
        loop.run_until_complete(hold_and_park())
    loop.close()
    proxy.delay = 0.0
    assert pool.requests == 0 and len(pool.size_cond._waiters) == 0
    handoffs = getattr(pool.size_cond, "motorpatch_handoffs", {})  # {loop: [waiter]}
    assert sum(map(len, handoffs.values())) == 1, "the waiter was not notified before its stop"
    cmap.events.clear()
    assert run_on("asyncio", lambda: asyncio.gather(get(2), get(3)), timeout=30) == [
        "doc-2",
        "doc-3",
    ]
    assert cmap.of(monitoring.ConnectionCheckOutFailedEvent) == []


class _ParkCounter:
    """Counts, per checkout, the times each green greenlet parked and was woken, by reason.

    A greenlet tracer (``greenlet.settrace``, on the loop's thread) sees every switch: a
    green greenlet switching out with ``motorpatch_parked`` set has parked for that
    reason; a switch into one that is still marked is its wake-up. CMAP's check-out
    started/checked-out events (published in the checking-out greenlet) delimit a checkout.
    """

    def __init__(self) -> None:
        self.parks: dict[str, int] = {}
        self.per_checkout: list[tuple[int, int]] = []  # (pool-wait parks, wake-ups)
        self._open: dict[Any, list[int]] = {}
        self._previous: Any = None

    def trace(self, event: str, args: Any) -> None:
        origin, target = args
        reason = getattr(origin, "motorpatch_parked", None)
        if reason is not None:
            self.parks[reason] = self.parks.get(reason, 0) + 1
            if reason == "pool wait" and origin in self._open:
                self._open[origin][0] += 1
        if getattr(target, "motorpatch_parked", None) == "pool wait" and target in self._open:
            self._open[target][1] += 1

    def started(self, _event: Any) -> None:
        self._open[greenlet.getcurrent()] = [0, 0]

    def checked_out(self, _event: Any) -> None:
        counts = self._open.pop(greenlet.getcurrent(), None)
        if counts is not None:
            self.per_checkout.append((counts[0], counts[1]))

    def __enter__(self) -> _ParkCounter:
        self._previous = greenlet.settrace(self.trace)
        return self

    def __exit__(self, *exc: object) -> None:
        greenlet.settrace(self._previous)


@pytest.mark.parametrize("max_connecting", [1, 2])
def test_a_checkout_waiting_for_max_connecting_parks_once_and_never_polls(
    max_connecting, loop_kind, proxy, *, proxied, recorder, getter
):
    """maxPoolSize=1000 (no pool-size wait), 60 callers looping while the pool grows
    max_connecting connections at a time: connections checked in are handed to woken
    waiters. A checkout finding every idle connection promised to a woken waiter queues
    behind them: it parks at most once, is woken once, and never yields to the loop in a
    loop (which it did, about ten times per operation, before)."""
    cmap = recorder("pool")
    pc = proxied(
        maxPoolSize=1000, maxConnecting=max_connecting, waitQueueTimeoutMS=10000,
        event_listeners=[cmap],
    )
    pool = _pool(pc.database.client)
    assert pool._max_connecting == max_connecting
    get = getter(pc)
    counter = _ParkCounter()
    cmap.on(monitoring.ConnectionCheckOutStartedEvent, counter.started)
    cmap.on(monitoring.ConnectionCheckedOutEvent, counter.checked_out)
    workers, k = 60, 4

    @motorpatch.green
    def work(w: int) -> list[str]:
        return [get(w * k + j) for j in range(k)]

    async def main() -> list[list[str]]:
        proxy.delay = 0.01  # the handshake too: the pool grows slowly
        with counter:
            return await asyncio.gather(*[work(w) for w in range(workers)])

    results = run_on(loop_kind, main, timeout=60)
    assert [tag for r in results for tag in r] == _expected(workers * k)
    assert len(counter.per_checkout) == workers * k
    waited = [c for c in counter.per_checkout if c[0]]
    assert len(waited) >= workers // 4, "the callers never waited for a connection"
    assert counter.parks.get("yield", 0) == 0, f"the checkout polled the loop: {counter.parks}"
    assert max(parks for parks, _ in counter.per_checkout) == 1, counter.per_checkout
    assert max(wakes for _, wakes in counter.per_checkout) == 1, counter.per_checkout
    assert _busy(pool) == {}


def test_a_checkout_cancelled_while_waiting_for_a_connection_passes_its_slot_on(
    loop_kind, proxy, *, proxied, recorder, getter
):
    """maxPoolSize=2, maxConnecting=1, slow replies: `a` makes the pool's first connection;
    `b` then waits for a connection, holding the pool's second slot meanwhile; `c` waits
    for a slot. Cancelling `b` hands its slot to `c` at once, so `c` makes the second
    connection as soon as `a`'s is made, while `a`'s operation still runs; without that
    hand-on `c` would wait for `a`'s checkin (or, on an idle pool, its wait-queue timeout)."""
    from motorpatch.bridge import pending_handoffs

    cmap = recorder("pool")
    pc = proxied(
        maxPoolSize=2, maxConnecting=1, waitQueueTimeoutMS=10000, event_listeners=[cmap]
    )
    pool = _pool(pc.database.client)
    get = getter(pc)

    async def until(predicate: Any) -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    async def main() -> list[str]:
        proxy.delay = 0.2  # the handshake's replies and the find's
        a = asyncio.ensure_future(get(0))
        await until(lambda: pool._pending == 1)
        b = asyncio.ensure_future(get(1))
        await until(lambda: len(pool._max_connecting_cond._waiters) == 1)
        c = asyncio.ensure_future(get(2))
        await until(lambda: len(pool.size_cond._waiters) == 1)
        b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await b
        return list(await asyncio.gather(a, c))

    assert run_on(loop_kind, main, timeout=30) == ["doc-0", "doc-2"]
    created = cmap.times(monitoring.ConnectionCreatedEvent)
    checked_in = cmap.times(monitoring.ConnectionCheckedInEvent)
    assert len(created) == 2
    assert created[1] < checked_in[0], "`c` got its slot only at `a`'s checkin"
    assert _busy(pool) == {}
    assert pending_handoffs(pool.size_cond) == 0
    assert pending_handoffs(pool._max_connecting_cond) == 0

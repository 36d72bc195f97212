"""One MongoClient used by green code, plain threads, start-up code and several loops at once.

Covers: green calls on a loop thread while plain threads hammer the same client (and the same
small pool); start-up code, then green code, then plain code after the loop has stopped; two
loops in two threads; many loops created and closed in one process (``asyncio.run``, Tornado,
uvloop); ``uninstall()`` when idle and with green calls in flight; and what happens when green
code on one loop waits for a future of another loop. Real nx-27017 through the fault proxy;
each call checks its own documents, so a reply delivered to the wrong caller fails the test.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pymongo
import pytest
from pymongo.read_preferences import ReadPreference

import motorpatch
from motorpatch.socket_shim import GreenSocket
from tests.support.loops import TEST_TIMEOUT, LagTicker, run_on
from tests.support.pymongo_compat import pooled_socket

pytestmark = pytest.mark.filterwarnings("error::motorpatch.BlockingCallWarning")

_ids = itertools.count()


def _pool(client: Any) -> Any:
    """The client's pool for its one server; call in plain code (it selects a server)."""
    return client._get_topology().select_server(ReadPreference.PRIMARY, "motorpatch-test").pool


def _sockets(pool: Any) -> list[Any]:
    """The socket objects of the idle connections in ``pool``."""
    return [pooled_socket(conn) for conn in pool.conns]


def _round_trip(coll: Any, owner: str) -> dict[str, Any]:
    """Insert a document with a fresh unique id and read it back; fail on someone else's reply."""
    doc = {"_id": f"{owner}-{next(_ids)}", "owner": owner}
    coll.insert_one(dict(doc))
    got = coll.find_one({"_id": doc["_id"]})
    assert got == doc, f"{owner} read {got!r}, wrote {doc!r}"
    return doc


def _proxied(make_client: Callable[..., Any], proxy: Any, coll: Any, **kw: Any) -> Any:
    """``coll`` seen through a client connected via the fault proxy."""
    return make_client(proxy.uri, **kw)[coll.database.name][coll.name]


class InFlight:
    """Counts calls in progress (thread-safe) and remembers the highest count seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.max = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


# -- green code and plain threads at the same time ------------------------------------------


def test_green_calls_and_plain_threads_share_one_client_and_pool(
    loop_kind, proxy, make_client, coll
):
    """6 greenlets on the loop and 4 plain threads, ~2 s, one client whose pool has 6 slots.

    The pool is smaller than its ten users, so slots pass between green waiters (woken from
    threads) and threads (woken by greenlets). Not fewer slots than threads: threads that
    check a connection in and straight out again starve every waiter, green or plain, as
    plain PyMongo threads starve each other. Every call checks its own document; at the end
    every owner's count matches.
    """
    pc = _proxied(make_client, proxy, coll, maxPoolSize=6)
    n_threads, n_green, duration = 4, 6, 2.0
    owners = [f"t{k}" for k in range(n_threads)] + [f"g{k}" for k in range(n_green)]
    done: Counter[str] = Counter(dict.fromkeys(owners, 0))  # no key is added while counting
    errors: list[BaseException] = []
    stop = threading.Event()
    green_in_flight = InFlight()
    proxy.delay = 0.01  # every reply waits: green calls must park to overlap

    def plain_worker(owner: str) -> None:
        try:
            while not stop.is_set():
                _round_trip(pc, owner)
                done[owner] += 1
        except BaseException as exc:
            errors.append(exc)

    @motorpatch.green
    def green_op(owner: str) -> None:
        with green_in_flight:
            _round_trip(pc, owner)
        done[owner] += 1

    async def green_worker(owner: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            await green_op(owner)

    async def main() -> tuple[Counter[str], Counter[str]]:
        before = Counter(done)
        deadline = time.monotonic() + duration
        await asyncio.gather(*[green_worker(f"g{k}", deadline) for k in range(n_green)])
        return before, Counter(done)

    threads = [threading.Thread(target=plain_worker, args=(f"t{k}",)) for k in range(n_threads)]
    motorpatch.install()
    for t in threads:
        t.start()
    try:
        before, after = run_on(loop_kind, main)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    print(f"mixed[{loop_kind}]: {dict(done)}; green in flight at once: max {green_in_flight.max}")
    for owner in owners:
        assert done[owner] > 0, f"{owner} made no progress"
        assert coll.count_documents({"owner": owner}) == done[owner]
    for k in range(n_threads):  # the threads progressed while the green calls ran
        assert after[f"t{k}"] > before[f"t{k}"]
    # Only one thread runs the greenlets: more than one in flight means they parked.
    assert green_in_flight.max == n_green


def test_start_up_then_green_then_plain_after_the_loop_stopped(loop_kind, proxy, make_client, coll):
    """The start-up connection serves green calls (wrapped), then plain code again."""
    pc = _proxied(make_client, proxy, coll, maxConnecting=10)
    pool = _pool(pc.database.client)
    motorpatch.install()
    started = _round_trip(pc, "start-up")  # plain, before any loop: a plain blocking socket
    (startup_sock,) = _sockets(pool)
    assert type(startup_sock) is not GreenSocket and startup_sock.getblocking()
    n, delay = 10, 0.1
    in_flight = InFlight()

    @motorpatch.green
    def op() -> dict[str, Any]:
        with in_flight:
            assert pc.find_one({"_id": started["_id"]}) == started
            return _round_trip(pc, "green")

    async def main() -> tuple[float, list[dict[str, Any]]]:
        await asyncio.gather(*[op() for _ in range(n)])  # warm-up: opens the connections
        proxy.delay = delay
        t0 = time.perf_counter()
        docs = await asyncio.gather(*[op() for _ in range(n)])
        return time.perf_counter() - t0, docs

    elapsed, docs = run_on(loop_kind, main)
    serial = n * 3 * delay  # three round trips per call
    print(
        f"start-up/green/plain[{loop_kind}]: {n} green calls in {elapsed * 1000:.0f} ms "
        f"(serial {serial * 1000:.0f} ms)"
    )
    assert in_flight.max == n
    assert elapsed < serial / 3, "the green calls did not overlap"
    sockets = _sockets(pool)
    assert all(type(s) is GreenSocket for s in sockets)
    assert any(s.raw is startup_sock for s in sockets), "the start-up connection was dropped"
    # The loop is gone: plain code again, on the green-wrapped connections (poll() waits).
    assert pc.count_documents({"owner": "green"}) == 2 * n
    assert {d["_id"] for d in pc.find({"owner": "green"})} >= {d["_id"] for d in docs}
    _round_trip(pc, "after")
    assert all(type(s) is GreenSocket for s in _sockets(pool))
    assert not startup_sock.getblocking()  # non-blocking for good; GreenSocket waits in poll()


# -- several loops ------------------------------------------------------------------------


@pytest.mark.parametrize("kinds", [("asyncio", "asyncio"), ("tornado", "uvloop")], ids="+".join)
def test_two_loops_in_two_threads_share_one_client(kinds, proxy, make_client, coll):
    """Both loops make progress at once; 8 slots for 20 calls, so waiters are woken across loops."""
    pc = _proxied(make_client, proxy, coll, maxPoolSize=8, maxConnecting=8)
    _pool(pc.database.client)
    motorpatch.install()
    per_loop, rounds = 10, 3
    everywhere = InFlight()
    per = {kind_i: InFlight() for kind_i in range(len(kinds))}
    barrier = threading.Barrier(len(kinds))
    results: dict[int, Any] = {}
    proxy.delay = 0.05

    def run_loop(i: int, kind: str) -> None:
        @motorpatch.green
        def op(owner: str) -> str:
            loop = asyncio.get_running_loop()
            with everywhere, per[i]:
                for _ in range(rounds):
                    _round_trip(pc, owner)
                    assert asyncio.get_running_loop() is loop  # resumed by its own loop
            return owner

        async def main() -> list[str]:
            await asyncio.get_running_loop().run_in_executor(None, barrier.wait, 30)
            return await asyncio.gather(*[op(f"loop{i}-{k}") for k in range(per_loop)])

        try:
            results[i] = run_on(kind, main)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run_loop, args=(i, kind)) for i, kind in enumerate(kinds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TEST_TIMEOUT + 10)
    assert not any(t.is_alive() for t in threads)
    for i in range(len(kinds)):
        assert results[i] == [f"loop{i}-{k}" for k in range(per_loop)], results[i]
        assert per[i].max == per_loop  # every call on that loop parked
        for k in range(per_loop):
            assert coll.count_documents({"owner": f"loop{i}-{k}"}) == rounds
    print(f"two loops {kinds}: max green calls in flight across both loops {everywhere.max}")
    assert everywhere.max > per_loop, "the two loops never had green calls in flight at once"


def test_many_loops_created_and_closed_in_one_process(proxy, make_client, coll):
    """asyncio.run several times, Tornado, uvloop, in turn, with plain use in between."""
    pc = _proxied(make_client, proxy, coll)
    pool = _pool(pc.database.client)
    motorpatch.install()
    n = 5
    in_flight = InFlight()

    @motorpatch.green
    def op(owner: str) -> dict[str, Any]:
        with in_flight:
            return _round_trip(pc, owner)

    proxy.delay = 0.02
    kinds = ["asyncio", "asyncio", "tornado", "asyncio", "uvloop", "tornado", "asyncio"]
    for run, kind in enumerate(kinds):
        in_flight.max = 0

        async def main(run: int = run) -> list[dict[str, Any]]:
            return await asyncio.gather(*[op(f"run{run}") for _ in range(n)])

        docs = run_on(kind, main)
        assert len({d["_id"] for d in docs}) == n and in_flight.max == n, kind
        _round_trip(pc, f"plain{run}")  # plain code between two loops
        assert pool.requests == 0 and pool.active_sockets == 0
    for run in range(len(kinds)):
        assert pc.count_documents({"owner": f"run{run}"}) == n
        assert pc.count_documents({"owner": f"plain{run}"}) == 1


def test_asyncio_run_cancels_a_parked_green_call_and_the_next_loop_is_unaffected(
    proxy, make_client, coll
):
    """A green call still waiting when asyncio.run returns is cancelled: its connection is
    closed (its reply must never be read by someone else), the pool slot comes back."""
    pc = _proxied(make_client, proxy, coll, maxPoolSize=1)
    pool = _pool(pc.database.client)
    motorpatch.install()
    doc = _round_trip(pc, "seed")
    cancelled = threading.Event()

    @motorpatch.green
    def stuck() -> None:
        try:
            pc.find_one({"_id": doc["_id"]})
        finally:
            cancelled.set()

    async def leave_it_parked() -> None:
        n = proxy.requests
        proxy.hang()
        parked = asyncio.ensure_future(stuck())
        await asyncio.get_running_loop().run_in_executor(None, proxy.wait_requests, n + 1)
        assert not parked.done()

    try:
        run_on("asyncio", leave_it_parked)
        assert cancelled.is_set()
        assert pool.requests == 0 and pool.active_sockets == 0 and len(pool.conns) == 0
    finally:
        proxy.resume()

    @motorpatch.green
    def fine() -> dict[str, Any]:
        return _round_trip(pc, "next")

    run_on("asyncio", fine)
    assert pc.find_one({"_id": doc["_id"]}) == doc


@pytest.mark.xfail(
    strict=True,
    reason="known limit: a green call left parked on a loop closed without cancelling it is "
    "never resumed or collected (a suspended greenlet in a reference cycle), so it keeps its "
    "connection and pool slot; ending it from another loop risked deadlocks (docs)",
)
def test_a_green_call_abandoned_on_a_closed_loop_releases_its_connection(proxy, make_client, coll):
    """loop.run_until_complete + close (and Tornado's run_sync + close) do not cancel pending
    tasks. Wanted: such a call releases its connection and its slot (maxPoolSize=1 here);
    today it keeps them and the next call times out."""
    pc = _proxied(make_client, proxy, coll, maxPoolSize=1)
    pool = _pool(pc.database.client)
    motorpatch.install()
    doc = _round_trip(pc, "seed")

    @motorpatch.green
    def stuck() -> None:
        pc.find_one({"_id": doc["_id"]})

    async def leave_it_parked() -> None:
        n = proxy.requests
        proxy.hang()
        parked = asyncio.ensure_future(stuck())
        await asyncio.get_running_loop().run_in_executor(None, proxy.wait_requests, n + 1)
        assert not parked.done()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(leave_it_parked(), TEST_TIMEOUT))
    finally:
        loop.close()
        del loop
        proxy.resume()
    gc.collect()

    @motorpatch.green
    def next_call() -> Any:
        with pymongo.timeout(5):  # WaitQueueTimeoutError if the abandoned call kept the slot
            return pc.find_one({"_id": doc["_id"]})

    assert run_on("asyncio", next_call) == doc
    assert (pool.requests, pool.active_sockets) == (0, 0), "the abandoned call holds its slot"


# -- uninstall ------------------------------------------------------------------------------


def test_uninstall_when_idle_keeps_green_made_connections_for_plain_use(proxy, make_client, coll):
    """Connections made or wrapped in green code stay in the pool as GreenSockets and serve
    plain code after uninstall (no reconnect); new connections are plain sockets again."""
    pc = _proxied(make_client, proxy, coll, maxConnecting=4)
    pool = _pool(pc.database.client)
    motorpatch.install()

    @motorpatch.green
    def op() -> dict[str, Any]:
        return _round_trip(pc, "green")

    async def main() -> None:
        n = proxy.requests
        proxy.hang()  # replies withheld: no call can finish and free a connection for another
        try:
            calls = asyncio.gather(*[op() for _ in range(4)])
            await asyncio.to_thread(proxy.wait_requests, n + 4)  # four handshakes, four sockets
        finally:
            proxy.resume()
        await calls

    run_on("asyncio", main)
    green_conns = {conn.id: pooled_socket(conn) for conn in pool.conns}
    assert len(green_conns) == 4 and all(type(s) is GreenSocket for s in green_conns.values())
    motorpatch.uninstall()

    _round_trip(pc, "plain")  # one plain thread: reuses a pooled GreenSocket
    assert {conn.id: pooled_socket(conn) for conn in pool.conns} == green_conns
    # Six plain threads at once: the four green connections plus two new, plain ones.
    errors: list[BaseException] = []

    def plain() -> None:
        try:
            _round_trip(pc, "threads")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=plain) for _ in range(6)]
    n = proxy.requests
    proxy.hang()  # replies withheld: each thread keeps its connection until all six have one
    try:
        for t in threads:
            t.start()
        proxy.wait_requests(n + 6)  # 4 inserts on pooled connections, 2 handshakes on new ones
    finally:
        proxy.resume()
    for t in threads:
        t.join(30)
    assert not errors, errors
    by_id = {conn.id: pooled_socket(conn) for conn in pool.conns}
    assert set(green_conns) <= set(by_id), "a green-made connection was discarded"
    new = [s for cid, s in by_id.items() if cid not in green_conns]
    assert new and all(type(s) is not GreenSocket for s in new)
    assert pc.count_documents({}) == 4 + 1 + 6


def test_uninstall_while_a_green_call_waits_for_its_reply_never_breaks_it(proxy, make_client, coll):
    """uninstall() refuses while the call is parked in a socket read and leaves motorpatch
    installed: the loop runs on and the call gets its own reply."""
    pc = _proxied(make_client, proxy, coll)
    _pool(pc.database.client)
    motorpatch.install()
    doc = _round_trip(pc, "seed")
    outcome: dict[str, Any] = {}

    @motorpatch.green
    def read() -> Any:
        return pc.find_one({"_id": doc["_id"]})

    async def main() -> tuple[Any, LagTicker]:
        n = proxy.requests
        proxy.hang()
        task = asyncio.ensure_future(read())
        await asyncio.get_running_loop().run_in_executor(None, proxy.wait_requests, n + 1)
        try:
            motorpatch.uninstall()
        except RuntimeError as exc:
            outcome["refused"] = str(exc)
        outcome["installed"] = motorpatch.is_installed()
        with LagTicker() as ticker:
            for _ in range(20):  # the loop runs while the call is still parked
                await asyncio.sleep(0.001)
            assert not task.done()
            proxy.resume()
            result = await task
        return result, ticker

    try:
        result, ticker = run_on("asyncio", main)
    finally:
        proxy.resume()
    assert result == doc
    assert len(ticker.lags) >= 20
    assert "1 green call(s) are in flight" in outcome["refused"], outcome
    assert outcome["installed"], outcome


def test_uninstall_with_green_calls_in_flight_is_refused(proxy, make_client, coll):
    """maxPoolSize=1: call A holds the slot (reply withheld), call B is parked before its
    query. uninstall() refuses with an error naming the calls in flight (unpatched, B's
    pool wait would block the loop and the slot's holder), and both calls finish."""
    pc = _proxied(make_client, proxy, coll, maxPoolSize=1)
    _pool(pc.database.client)
    motorpatch.install()
    doc = _round_trip(pc, "seed")
    outcome: dict[str, Any] = {}

    @motorpatch.green
    def holder() -> Any:
        return pc.find_one({"_id": doc["_id"]})

    @motorpatch.green
    def waiter(gate: asyncio.Event) -> Any:
        motorpatch.await_(gate.wait())
        with pymongo.timeout(2):  # bounds the hang of today's behaviour
            return pc.find_one({"_id": doc["_id"]})

    async def main() -> list[Any]:
        gate = asyncio.Event()
        n = proxy.requests
        proxy.hang()
        calls = [asyncio.ensure_future(holder()), asyncio.ensure_future(waiter(gate))]
        await asyncio.get_running_loop().run_in_executor(None, proxy.wait_requests, n + 1)
        try:
            motorpatch.uninstall()
        except RuntimeError as exc:
            outcome["refused"] = str(exc)
        gate.set()
        await asyncio.sleep(0)  # B runs its query now: parked (installed) or blocking (not)
        proxy.resume()
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        results = run_on("asyncio", main)
    finally:
        proxy.resume()
    print(f"uninstall in flight: refused={outcome.get('refused')!r}, results={results!r}")
    assert "2 green call(s) are in flight" in outcome["refused"]
    assert "Await or cancel them first" in outcome["refused"]
    assert motorpatch.is_installed()
    assert results == [doc, doc]


# -- green code and two loops ---------------------------------------------------------------


def test_await_of_another_loops_future_fails_in_green_code_on_its_own_loop(
    loop_kind, make_client, coll
):
    """Green code on loop A awaiting a future of loop B gets a GreenContextError naming the
    fix; loop B never drives it, and the green call goes on on loop A (the right way:
    wrap_future)."""
    client_coll = make_client()[coll.database.name][coll.name]
    motorpatch.install()
    other = asyncio.new_event_loop()
    runner = threading.Thread(target=other.run_forever)
    runner.start()

    @motorpatch.green
    def mix() -> tuple[str, Any, Any]:
        foreign = motorpatch.await_(
            asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_make_future(), other))
        )
        try:
            motorpatch.await_(foreign)
        except RuntimeError as exc:
            error = str(exc)
        else:
            error = "no error"
        here = asyncio.get_running_loop()
        after = _round_trip(client_coll, "after-mix")  # still green on loop A
        assert asyncio.get_running_loop() is here
        # Waiting on another loop's work, done right: a concurrent future, wrapped.
        value = motorpatch.await_(
            asyncio.wrap_future(asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "B"), other))
        )
        return error, after, value

    try:
        error, after, value = run_on(loop_kind, mix)
    finally:
        other.call_soon_threadsafe(other.stop)
        runner.join(10)
        other.close()
    print(f"await_ of another loop's future [{loop_kind}]: {error}")
    assert "future of another event loop" in error and "run_coroutine_threadsafe" in error
    assert client_coll.find_one({"_id": after["_id"]}) == after
    assert value == "B"


async def _make_future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


def test_a_green_coroutine_runs_on_the_loop_that_awaits_it(make_client, coll):
    """A green call created on loop A's thread but awaited on loop B runs (and parks) on B."""
    pc = make_client()[coll.database.name][coll.name]
    motorpatch.install()
    b_loop = asyncio.new_event_loop()
    runner = threading.Thread(target=b_loop.run_forever)
    runner.start()

    @motorpatch.green
    def where() -> tuple[Any, Any]:
        return asyncio.get_running_loop(), _round_trip(pc, "moved")

    async def main() -> tuple[Any, Any, Any]:
        coro = where()  # made on loop A; nothing runs until it is awaited
        fut = asyncio.run_coroutine_threadsafe(coro, b_loop)
        ran_on, doc = await asyncio.wrap_future(fut)
        return asyncio.get_running_loop(), ran_on, doc

    try:
        a_loop, ran_on, doc = run_on("asyncio", main)
    finally:
        b_loop.call_soon_threadsafe(b_loop.stop)
        runner.join(10)
        b_loop.close()
    assert ran_on is b_loop and ran_on is not a_loop
    assert pc.find_one({"_id": doc["_id"]}) == doc

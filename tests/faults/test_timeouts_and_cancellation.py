"""Timeouts and cancellation in green code: CSOT and client options, cancel mid-operation.

(A hung server, per loop, is tests/faults/test_proxy_faults.py's.)

Each case runs against nx-27017 behind the loopback fault proxy, and where a
failure is expected the same scenario is first run in plain PyMongo so that
green code is held to the same exception class.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

import motorpatch
from tests.support.loops import LagTicker, run_on

pytestmark = pytest.mark.usefixtures("installed")


class ClosedConnections(monitoring.ConnectionPoolListener):
    """Records CMAP connection-closed reasons (thread-safe enough for list.append)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self.reasons.append(event.reason)

    def __getattr__(self, name: str) -> Any:  # the other CMAP callbacks: ignore
        return lambda event: None


def _pool(client: Any) -> Any:
    """The connection pool of the client's (single) server."""
    (server,) = client._get_topology()._servers.values()
    return server.pool


def _twin_collections(make_client: Any, proxy: Any, coll: Any, **options: Any) -> tuple[Any, Any]:
    """The test collection through two fresh clients, each with one warm pooled connection.

    One runs a scenario in plain code, the other the same scenario in green
    code: each starts from the same state, whatever PyMongo's version does to
    its topology when an operation times out.
    """
    twins = []
    for _ in range(2):
        twin = make_client(proxy.uri, **options)[coll.database.name][coll.name]
        twin.find_one({})
        twins.append(twin)
    return twins[0], twins[1]


def _plain_errors(*calls: Any) -> list[type[BaseException]]:
    """Run ``calls`` in sequence in a plain thread (no loop); the class each one raised."""
    caught: list[type[BaseException]] = []

    def run() -> None:
        for call in calls:
            try:
                call()
            except BaseException as exc:
                caught.append(type(exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert len(caught) == len(calls), "a plain call did not fail: the scenario is wrong"
    return caught


def test_cancel_mid_operation_closes_the_connection_and_no_reply_goes_astray(
    loop_kind, proxy, make_client, coll
):
    coll.insert_many([{"_id": i, "v": f"value-{i}"} for i in range(100)])
    closed = ClosedConnections()
    client = make_client(proxy.uri, maxPoolSize=5, event_listeners=[closed])
    pc = client[coll.database.name][coll.name]

    @motorpatch.green
    def get(i: int) -> Any:
        return pc.find_one({"_id": i})

    cleanups: list[int] = []
    warm: list[int] = []

    @motorpatch.green
    def get_tracked(i: int) -> Any:
        try:
            return pc.find_one({"_id": i})
        finally:
            cleanups.append(i)

    async def main() -> list[Any]:
        proxy.delay = 0.05  # slow enough that the warm-up needs several connections at once
        await asyncio.gather(*[get(i) for i in range(5)])
        warm.append(len(_pool(client).conns))
        proxy.delay = 5.0  # replies now arrive long after we cancel
        seen = proxy.requests
        # One call per pooled connection: none waits for a slot or a new connection.
        tasks = [asyncio.ensure_future(get_tracked(i)) for i in range(warm[0])]
        # Synchronise on the requests having reached the server, not on time.
        await asyncio.get_running_loop().run_in_executor(None, proxy.wait_requests, seen + warm[0])
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
        proxy.delay = 0.0
        return await asyncio.gather(*[get(i) for i in range(100)])

    results = run_on(loop_kind, main)
    assert warm[0] >= 2
    assert sorted(cleanups) == list(range(warm[0]))  # finally blocks ran
    assert results == [{"_id": i, "v": f"value-{i}"} for i in range(100)]
    # Every cancelled connection was closed, never returned to the pool.
    assert closed.reasons.count("error") >= warm[0], closed.reasons


def test_csot_deadline_from_the_caller_applies_in_green_code(loop_kind, proxy, make_client, coll):
    coll.insert_one({"_id": 1})
    plain_c, green_c = _twin_collections(make_client, proxy, coll)
    proxy.delay = 2.0

    def timed_find() -> None:
        with pymongo.timeout(0.2):
            plain_c.find_one({})

    # The same two calls in sequence in each mode: a timeout may change what the next sees.
    expected = _plain_errors(timed_find, timed_find)
    assert all(issubclass(e, pymongo.errors.PyMongoError) for e in expected)

    @motorpatch.green
    def get() -> Any:
        return green_c.find_one({})

    @motorpatch.green
    def get_with_own_timeout() -> Any:
        with pymongo.timeout(0.2):
            return green_c.find_one({})

    async def main() -> tuple[list[Any], LagTicker]:
        with LagTicker() as ticker:
            with pymongo.timeout(0.2):  # set in the coroutine, seen through the copied context
                first = await asyncio.gather(get(), return_exceptions=True)
            second = await asyncio.gather(get_with_own_timeout(), return_exceptions=True)
        return [*first, *second], ticker

    results, ticker = run_on(loop_kind, main)
    assert [type(r) for r in results] == expected
    assert ticker.max < 0.1, f"the loop stalled {ticker.max:.3f}s during a CSOT wait"


def test_client_option_timeouts_match_plain(proxy, make_client, coll):
    coll.insert_one({"_id": 1})
    for options in ({"timeoutMS": 200}, {"socketTimeoutMS": 200}):
        plain_c, green_c = _twin_collections(make_client, proxy, coll, **options)
        proxy.delay = 2.0
        expected = _plain_errors(lambda plain_c=plain_c: plain_c.find_one({}))

        @motorpatch.green
        def get(green_c: Any = green_c) -> Any:
            return green_c.find_one({})

        async def main(get: Any = get) -> tuple[list[Any], LagTicker]:
            with LagTicker() as ticker:
                return await asyncio.gather(get(), return_exceptions=True), ticker

        (result,), ticker = run_on("asyncio", main)
        assert [type(result)] == expected, (options, result)
        assert ticker.max < 0.1, f"{options}: the loop stalled {ticker.max:.3f}s"
        proxy.delay = 0.0


def test_plain_threads_and_green_code_share_one_client(proxy, make_client, coll):
    coll.insert_many([{"_id": i} for i in range(50)])
    client = make_client(proxy.uri)
    pc = client[coll.database.name][coll.name]
    proxy.delay = 0.02
    errors: list[BaseException] = []

    def thread_work(seed: int) -> None:
        try:
            for n in range(40):
                i = (seed * 7 + n) % 50
                assert pc.find_one({"_id": i}) == {"_id": i}
        except BaseException as exc:
            errors.append(exc)

    @motorpatch.green
    def green_work(seed: int) -> int:
        for n in range(10):
            i = (seed * 3 + n) % 50
            assert pc.find_one({"_id": i}) == {"_id": i}
        return seed

    async def main() -> tuple[list[int], LagTicker]:
        threads = [threading.Thread(target=thread_work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        with LagTicker() as ticker:
            done = await asyncio.gather(*[green_work(s) for s in range(20)])
        for t in threads:
            await asyncio.get_running_loop().run_in_executor(None, t.join)
        return done, ticker

    done, ticker = run_on("asyncio", main)
    assert done == list(range(20))
    assert errors == []
    # Unpatched, one greenlet's ten 20 ms calls would block the loop for 200 ms.
    assert ticker.max < 0.1, f"the loop stalled {ticker.max:.3f}s"


def test_a_client_created_before_install_works_in_green_code(server_uri, proxy, coll):
    motorpatch.uninstall()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(proxy.uri)
    try:
        pc = client[coll.database.name][coll.name]
        coll.insert_many([{"_id": i} for i in range(10)])
        assert pc.count_documents({}) == 10  # plain sockets in the pool, made before install
        motorpatch.install()
        proxy.delay = 0.1

        @motorpatch.green
        def get(i: int) -> Any:
            return pc.find_one({"_id": i})

        async def main() -> tuple[float, list[Any]]:
            loop = asyncio.get_running_loop()
            start = loop.time()
            results = await asyncio.gather(*[get(i) for i in range(10)])
            return loop.time() - start, results

        elapsed, results = run_on("asyncio", main)
        assert results == [{"_id": i} for i in range(10)]
        assert elapsed < 10 * 0.1 / 2, (
            f"calls on a pre-install client did not overlap ({elapsed:.2f}s)"
        )
    finally:
        client.close()

"""The core promise over the network: green calls overlap, the loop keeps ticking, forks fall back.

Every test here talks to a real server (nx-27017 or MONGODB_URI), some through
the loopback fault proxy; nothing is mocked. Mixed use (green code, plain
threads and several loops on one client) is tests/scenarios/test_mixed_use.py;
faults, hangs and cancellation are tests/faults/.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pymongo
import pytest

import motorpatch
from tests.support.loops import LagTicker, run_on

pytestmark = pytest.mark.usefixtures("installed")


def _seed(coll: Any, n: int = 10) -> None:
    coll.insert_many([{"i": i, "tag": f"doc-{i}"} for i in range(n)])


def test_overlap_n_delayed_operations_take_about_one_delay(loop_kind, proxy, make_client, coll):
    """100 find_one, each delayed 50 ms by the server side, finish in a few delays, not 5 s."""
    _seed(coll)
    client = make_client(proxy.uri, maxPoolSize=100)
    pc = client[coll.database.name][coll.name]
    delay, n = 0.05, 100

    @motorpatch.green
    def get(i: int) -> Any:
        return pc.find_one({"i": i % 10})["tag"]

    async def main() -> tuple[float, list[Any]]:
        await asyncio.gather(*[get(i) for i in range(n)])  # warm: open the connections
        proxy.delay = delay
        start = time.perf_counter()
        results = await asyncio.gather(*[get(i) for i in range(n)])
        return time.perf_counter() - start, results

    elapsed, results = run_on(loop_kind, main)
    assert results == [f"doc-{i % 10}" for i in range(n)]
    serial = n * delay
    print(
        f"overlap[{loop_kind}]: {n} x {delay * 1000:.0f} ms in {elapsed * 1000:.0f} ms "
        f"(serial would be {serial * 1000:.0f} ms, ratio {serial / elapsed:.1f}x)"
    )
    assert elapsed < serial / 5, f"{n} delayed calls took {elapsed:.2f}s: they did not overlap"


def test_loop_keeps_ticking_while_greenlets_wait_on_the_server(loop_kind, proxy, make_client, coll):
    _seed(coll)
    client = make_client(proxy.uri)
    pc = client[coll.database.name][coll.name]
    delay = 0.2  # unpatched, every call would stall the loop this long

    @motorpatch.green
    def get(i: int) -> Any:
        return pc.find_one({"i": i % 10})

    async def main() -> LagTicker:
        await asyncio.gather(*[get(i) for i in range(20)])
        proxy.delay = delay
        with LagTicker() as ticker:
            for _ in range(3):
                await asyncio.gather(*[get(i) for i in range(20)])
        return ticker

    ticker = run_on(loop_kind, main)
    print(
        f"loop lag[{loop_kind}] while 20 greenlets wait {delay * 1000:.0f} ms: "
        f"p50 {ticker.percentile(50) * 1000:.2f} ms, p99 {ticker.percentile(99) * 1000:.2f} ms, "
        f"max {ticker.max * 1000:.2f} ms over {len(ticker.lags)} ticks"
    )
    assert len(ticker.lags) > 50
    assert ticker.max < delay / 2, "the loop stalled for as long as a server reply"


def test_a_child_forked_inside_green_code_falls_back_to_plain_blocking(server_uri, coll):
    """After fork() no loop runs in the child: green code there must behave as plain code."""
    coll.insert_one({"_id": "forked"})
    db, name = coll.database.name, coll.name

    @motorpatch.green
    def fork_and_query() -> int:
        pid = os.fork()
        if pid == 0:  # child: no running loop, a fresh client, plain blocking I/O
            code = 1
            try:
                child = pymongo.MongoClient(server_uri, serverSelectionTimeoutMS=5000)
                found = child[db][name].find_one({"_id": "forked"})
                code = 0 if found == {"_id": "forked"} else 2
            finally:
                os._exit(code)
        loop = asyncio.get_running_loop()
        _, status = motorpatch.await_(loop.run_in_executor(None, os.waitpid, pid, 0))
        return os.waitstatus_to_exitcode(status)

    async def main() -> int:
        return await fork_and_query()

    assert run_on("asyncio", main) == 0

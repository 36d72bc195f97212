"""Two mongos routers under green code, compared with the same code in plain PyMongo.

Two MockupDB routers (``hello`` with ``msg: "isdbgrid"``) within one
``localThresholdMS`` window: operations spread over both; when one router
goes away with operations in flight on it (its connections reset, its port
closed), retryable reads and writes retry on the other and every operation
succeeds, in green code exactly as in plain threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pymongo.errors import PyMongoError

import motorpatch
from tests.support.loops import LagTicker, run_on

pytestmark = pytest.mark.usefixtures("installed")

N = 24


def _op(coll: Any, i: int) -> str:
    try:
        if i % 2:
            coll.insert_one({"i": i}, comment=f"op{i}")
        else:
            coll.find_one({"i": i}, comment=f"op{i}")
        return "ok"
    except PyMongoError as exc:
        return type(exc).__name__


def _client(new_client: Any, routers: Any) -> Any:
    """A client that has discovered both routers (else a burst goes to the first one seen)."""
    client = new_client(routers.uri)
    deadline = time.monotonic() + 10
    while len(client._topology.description.known_servers) < 2:
        assert time.monotonic() < deadline, "the client never discovered both routers"
        time.sleep(0.005)  # observing the topology, not synchronising
    return client.db.c


def test_operations_spread_over_both_routers(routers, new_client, loop_kind):
    routers.delay = 0.05
    plain_coll = _client(new_client, routers)
    with ThreadPoolExecutor(N) as pool:
        plain = list(pool.map(lambda i: _op(plain_coll, i), range(N)))
    plain_spread = Counter(m for m, _, _ in routers.log)
    routers.log.clear()

    coll = _client(new_client, routers)

    async def main() -> tuple[list[str], float]:
        start = time.perf_counter()
        out = await asyncio.gather(*[motorpatch.green(_op)(coll, i) for i in range(N)])
        return out, time.perf_counter() - start

    green, elapsed = run_on(loop_kind, main, timeout=30)
    green_spread = Counter(m for m, _, _ in routers.log)
    assert plain == green == ["ok"] * N
    assert set(plain_spread) == set(green_spread) == {"m0", "m1"}, (plain_spread, green_spread)
    assert elapsed < N * routers.delay / 2, f"{N} calls took {elapsed:.2f}s: no overlap"


def _go_away(routers: Any) -> None:
    """Router m0 stops (its connections reset, its port closes); m1 answers what it holds."""
    gone = routers.members[0]
    stopper = threading.Thread(target=gone.stop, name="stop-m0")
    stopper.start()
    routers.release(lambda m: m is not gone)
    stopper.join(30)


def _on_gone(routers: Any) -> int:
    return sum(1 for m, _ in routers.held if m is routers.members[0])


def test_operations_survive_a_router_going_away(make_routers, new_client, loop_kind):
    """All N operations are in flight (held) when router m0 goes away; the ones on m0
    are retried on m1, in plain threads and in green code alike."""
    plain_routers, green_routers = make_routers(), make_routers()
    plain_coll = _client(new_client, plain_routers)
    plain_routers.hold = True
    with ThreadPoolExecutor(N) as pool:
        futures = [pool.submit(_op, plain_coll, i) for i in range(N)]
        plain_routers.wait_held(N)
        plain_on_gone = _on_gone(plain_routers)
        _go_away(plain_routers)
        plain = [f.result(30) for f in futures]

    coll = _client(new_client, green_routers)

    async def main() -> tuple[list[str], int, LagTicker]:
        green_routers.hold = True
        tasks = [asyncio.ensure_future(motorpatch.green(_op)(coll, i)) for i in range(N)]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, green_routers.wait_held, N)
        on_gone = _on_gone(green_routers)
        with LagTicker() as ticker:
            await loop.run_in_executor(None, _go_away, green_routers)
            out = await asyncio.gather(*tasks)
        return out, on_gone, ticker

    green, on_gone, ticker = run_on(loop_kind, main, timeout=60)
    assert plain == green == ["ok"] * N
    assert plain_on_gone > 0 and on_gone > 0, "no operation was in flight on m0"
    for routers, gone in ((plain_routers, plain_on_gone), (green_routers, on_gone)):
        attempts = Counter(c for _, _, c in routers.log)
        retried = {c for c, n in attempts.items() if n > 1}
        assert len(retried) == gone  # exactly the ones in flight on m0, retried once
        assert max(attempts.values()) == 2
        assert {m for m, _, c in routers.log if c in retried} == {"m0", "m1"}
    assert ticker.max < 0.1, f"loop stalled for {ticker.max:.3f}s"

    # Afterwards everything goes to the router that is left.
    green_routers.log.clear()
    assert run_on(loop_kind, lambda: _gather_ops(coll), timeout=30) == ["ok"] * N
    assert {m for m, _, _ in green_routers.log} == {"m1"}


async def _gather_ops(coll: Any) -> list[str]:
    return list(await asyncio.gather(*[motorpatch.green(_op)(coll, i) for i in range(N)]))

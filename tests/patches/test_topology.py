"""The topology patch: server-selection waits park, and monitor threads wake them.

Real sockets only: a loopback port where nothing listens (connection refused at
once, so selection waits for its whole timeout), and an nx-27017 started on that
port while green calls wait for it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.errors import ServerSelectionTimeoutError

import motorpatch
from tests.support.loops import LagTicker, run_on
from tests.support.servers import NxServer, free_port

pytestmark = pytest.mark.usefixtures("installed")


def _nowhere() -> str:
    return f"mongodb://127.0.0.1:{free_port()}"


async def _until(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` on the loop (an observation, not a sleep standing in for one)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


def test_selection_timeout_parks_and_concurrent_timeouts_overlap(loop_kind, make_client):
    timeout, n = 0.5, 20
    plain = make_client(_nowhere(), serverSelectionTimeoutMS=int(timeout * 1000))
    with pytest.raises(Exception) as plain_error:  # the class is compared below
        plain.motorpatch_test.c.find_one({})

    client = make_client(_nowhere(), serverSelectionTimeoutMS=int(timeout * 1000))
    coll = client.motorpatch_test.c

    @motorpatch.green
    def find() -> Any:
        return coll.find_one({})

    async def main() -> tuple[list[Any], float, LagTicker]:
        with LagTicker() as ticker:
            start = time.perf_counter()
            outcomes = await asyncio.gather(*[find() for _ in range(n)], return_exceptions=True)
            return outcomes, time.perf_counter() - start, ticker

    outcomes, elapsed, ticker = run_on(loop_kind, main, timeout=30)
    assert type(plain_error.value) is ServerSelectionTimeoutError
    assert [type(o) for o in outcomes] == [ServerSelectionTimeoutError] * n
    assert timeout <= elapsed < 5 * timeout, f"{n} selections took {elapsed:.2f}s: no overlap"
    assert len(ticker.lags) > 100
    assert ticker.max < timeout / 5, f"loop stalled for {ticker.max:.3f}s"


def test_monitor_thread_notify_wakes_parked_selection(loop_kind, make_client, recorder, fail_fast):
    """Green calls wait for a server that is not there yet; a plain thread starts one.

    The monitor thread's ``notify_all()`` must wake every parked greenlet at once
    (about 1 ms here). The greenlets start 0.1 s apart, so if they only woke on
    their own 0.5 s re-check (a lost wake-up) they would resume some 0.3 s late.
    """
    port, n = free_port(), 5
    beats, cmap = recorder("heartbeat"), recorder("pool")
    failed = threading.Event()
    beats.on(monitoring.ServerHeartbeatFailedEvent, lambda e: failed.set())
    client = make_client(
        f"mongodb://127.0.0.1:{port}",
        serverSelectionTimeoutMS=10000,
        connect=False,
        event_listeners=[beats, cmap],
    )
    coll = client.motorpatch_test.wake
    server = NxServer(port)
    all_parked, abandon = threading.Event(), threading.Event()

    def start_server() -> None:
        # Not a sleep: wait until every green call is parked in selection and the
        # monitor has seen the port refuse a connection, then start the server.
        if all_parked.wait(30) and failed.wait(30) and not abandon.is_set():
            server.start()

    @motorpatch.green
    @fail_fast
    def op(i: int) -> int:
        coll.insert_one({"i": i})
        return int(coll.find_one({"i": i})["i"])

    async def main() -> tuple[list[int], bool, LagTicker]:
        with LagTicker() as ticker:
            tasks = []
            for i in range(n):
                tasks.append(asyncio.ensure_future(op(i)))
                await asyncio.sleep(0.1)  # staggered on purpose (see the docstring)
            parked = await _until(lambda: len(client._topology._condition._waiters) == n)
            all_parked.set()
            results = await asyncio.gather(*tasks)
        return results, parked, ticker

    starter = threading.Thread(target=start_server, name="start-nx")
    starter.start()
    try:
        results, parked, ticker = run_on(loop_kind, main, timeout=40)
    finally:
        abandon.set()
        all_parked.set()
        failed.set()
        starter.join(30)
        server.cleanup()

    assert parked, "the green calls were not all parked in server selection"
    assert sorted(results) == list(range(n))
    (up, *_) = beats.times(monitoring.ServerHeartbeatSucceededEvent)
    resumed = cmap.times(monitoring.ConnectionCheckOutStartedEvent)[:n]
    assert len(resumed) == n and all(t >= up for t in resumed)
    lateness = max(resumed) - up
    print(
        f"wake-up[{loop_kind}]: {n} parked selections resumed {lateness * 1000:.1f} ms after "
        f"the first successful heartbeat; loop lag max {ticker.max * 1000:.1f} ms"
    )
    assert lateness < 0.1, f"parked selections resumed {lateness:.3f}s after the server came up"
    assert ticker.max < 0.1, f"loop stalled for {ticker.max:.3f}s"
    assert len(ticker.lags) > 200

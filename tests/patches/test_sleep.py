"""The sleep patch: PyMongo's back-off sleeps park in green code and are real everywhere else.

``install()`` replaces the ``time`` attribute of ``mongo_client`` and
``client_session`` with a proxy whose ``sleep`` parks green code; the global
``time.sleep`` is never touched. The last test drives a real back-off through
PyMongo: ``with_transaction`` against mockupdb, whose ``commitTransaction``
answers ``TransientTransactionError`` (with its error label, as a real server
does) several times before it succeeds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from mockupdb import MockupDB
from pymongo.synchronous import client_session, mongo_client

import motorpatch
from tests.support.loops import LagTicker, run_on

pytestmark = pytest.mark.skipif(
    pymongo.version_tuple[:2] < (4, 17), reason="PyMongo has no back-off sleeps before 4.17"
)

ORIGINAL_SLEEP = time.sleep  # taken at import, before any test installs
MODULES = {"mongo_client": mongo_client, "client_session": client_session}
TIMER_SLACK = 0.01  # loop timers may fire up to a clock tick early (uvloop: 1 ms)


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize("module", list(MODULES))
def test_back_off_sleep_parks_in_green_code(module, loop_kind):
    n, duration = 10, 0.2

    @motorpatch.green
    def back_off() -> float:
        start = time.perf_counter()
        MODULES[module].time.sleep(duration)  # e.g. pymongo.synchronous.mongo_client.time
        return time.perf_counter() - start

    async def main() -> tuple[list[float], float, LagTicker]:
        with LagTicker() as ticker:
            start = time.perf_counter()
            slept = await asyncio.gather(*[back_off() for _ in range(n)])
            return slept, time.perf_counter() - start, ticker

    slept, elapsed, ticker = run_on(loop_kind, main, timeout=30)
    assert min(slept) >= duration - TIMER_SLACK, "a green sleep returned early"
    assert elapsed < 2.5 * duration, f"{n} sleeps of {duration}s took {elapsed:.2f}s: no overlap"
    assert len(ticker.lags) > 50 and ticker.max < 0.05, f"loop stalled for {ticker.max:.3f}s"


@pytest.mark.usefixtures("installed")
def test_outside_green_code_the_same_sleep_is_real():
    """A plain thread and the loop's own thread (not green) really sleep, while green code
    parks on the very same attribute; the global ``time.sleep`` is the original object."""
    assert time.sleep is ORIGINAL_SLEEP
    duration = 0.2
    for module in MODULES.values():
        assert module.time is not time  # the proxy...
        assert module.time.monotonic is time.monotonic  # ...of the real module

    def plain() -> dict[str, float]:
        slept = {}
        for name, module in MODULES.items():
            start = time.perf_counter()
            module.time.sleep(duration)
            slept[name] = time.perf_counter() - start
        return slept

    @motorpatch.green
    def green() -> None:
        mongo_client.time.sleep(2 * duration)

    async def main() -> tuple[dict[str, float], float, LagTicker]:
        with LagTicker() as ticker:
            parked = asyncio.ensure_future(green())
            thread_slept = await asyncio.get_running_loop().run_in_executor(None, plain)
            await parked
        start = time.perf_counter()
        client_session.time.sleep(0.05)  # on the loop's thread, but not green code
        return thread_slept, time.perf_counter() - start, ticker

    thread_slept, on_loop_thread, ticker = run_on("asyncio", main, timeout=30)
    assert all(s >= duration for s in thread_slept.values()), thread_slept
    assert on_loop_thread >= 0.05
    assert ticker.max < 0.05, "the plain thread's sleep blocked the loop"
    assert time.sleep is ORIGINAL_SLEEP


def test_uninstall_restores_the_time_module_itself():
    for _ in range(2):
        motorpatch.install()
        try:
            assert all(m.time is not time for m in MODULES.values())
            assert time.sleep is ORIGINAL_SLEEP
        finally:
            motorpatch.uninstall()
        assert mongo_client.time is time
        assert client_session.time is time
        assert time.sleep is ORIGINAL_SLEEP


# -- a real back-off: with_transaction retrying a TransientTransactionError ------------

FAILED_COMMITS = 12  # back-offs of up to 5 ms * 1.5**retry (max 0.5 s) each, times jitter


@pytest.fixture
def txn_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A mockupdb standalone with sessions whose first FAILED_COMMITS commits fail."""
    counts = {"commitTransaction": 0, "insert": 0}
    server = MockupDB()  # binds 127.0.0.1 (AF_INET only)

    def respond(request: Any) -> bool:
        name = next(iter(request.doc))
        if name.lower() in ("hello", "ismaster"):
            return bool(
                request.ok(
                    isWritablePrimary=True,
                    ismaster=True,
                    helloOk=True,
                    minWireVersion=0,
                    maxWireVersion=21,
                    logicalSessionTimeoutMinutes=30,
                )
            )
        if name in counts:
            counts[name] += 1
        if name == "commitTransaction" and counts[name] <= FAILED_COMMITS:
            return bool(
                request.replies(
                    ok=0,
                    code=251,
                    codeName="NoSuchTransaction",
                    errmsg="transient, try again",
                    errorLabels=["TransientTransactionError"],
                )
            )
        if name == "insert":
            return bool(request.ok(n=1))
        return bool(request.ok())

    server.autoresponds(respond)
    server.run()
    try:
        yield f"mongodb://127.0.0.1:{server.port}/?directConnection=true", counts
    finally:
        server.stop()


@pytest.mark.usefixtures("installed")
def test_with_transaction_back_off_parks(txn_server, make_client):
    uri, counts = txn_server
    client = make_client(uri, retryWrites=False)
    coll = client.motorpatch_test.txn
    callbacks: list[int] = []

    def callback(session: Any) -> str:
        callbacks.append(threading.get_ident())
        coll.insert_one({"x": len(callbacks)}, session=session)
        return "committed"

    @motorpatch.green
    def transfer() -> str:
        with client.start_session() as session:
            return str(session.with_transaction(callback))

    async def main() -> tuple[str, float, LagTicker]:
        with LagTicker() as ticker:
            start = time.perf_counter()
            result = await transfer()
            return result, time.perf_counter() - start, ticker

    result, elapsed, ticker = run_on("asyncio", main, timeout=60)
    assert result == "committed"
    assert counts == {"commitTransaction": FAILED_COMMITS + 1, "insert": FAILED_COMMITS + 1}
    assert len(callbacks) == FAILED_COMMITS + 1
    assert set(callbacks) == {threading.get_ident()}  # green code runs on the loop's thread
    # The back-offs add up to ~0.9 s on average (one of 0.1 s+ is near certain): blocking
    # sleeps would show up as loop lag of that size.
    assert len(ticker.lags) > elapsed / 0.01
    assert ticker.max < 0.05, f"a back-off sleep blocked the loop for {ticker.max:.3f}s"

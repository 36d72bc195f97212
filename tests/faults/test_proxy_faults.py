"""Wire faults under many concurrent green calls, each held to plain PyMongo's outcome.

nx-27017 (a standalone: reads are retryable, writes are not) behind the
loopback fault proxy: a hung server with and without socketTimeoutMS/CSOT, a
black hole, a TCP reset in mid-request and in mid-reply, a reply cut short
(FIN), and replies dripped one byte at a time. Each fault is aimed at exactly
one operation (the request carrying its document's unique mark). The same
scenario first runs in plain PyMongo (no loop) and the green outcome must be
the same (a result, or the same exception class); the loop keeps ticking
(``LagTicker``); a broken connection is never checked out again (CMAP events).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymongo
import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout

import motorpatch
from tests.support.loops import LOOP_KINDS, LagTicker, run_on

pytestmark = pytest.mark.usefixtures("installed")

N = 20  # concurrent green calls per scenario
# Loop-lag bound: generous for a loaded machine; a blocking wait would stall for seconds
# (N calls x the 0.3 s timeout, or a retry's server selection, on the loop's thread).


def _pool(client: Any) -> Any:
    (server,) = client._get_topology()._servers.values()
    return server.pool


def _warm(make_client: Any, proxy: Any, cmap: Any, n: int, **options: Any) -> Any:
    """A client through the proxy with ``n`` connections made (minPoolSize) and a recorder."""
    rec = cmap()
    client = make_client(proxy.uri, minPoolSize=n, maxPoolSize=n, event_listeners=[rec], **options)
    client.admin.command("ping")
    rec.wait_ready(n)
    return client, rec


def _coll(client: Any, marked: Any) -> Any:
    return client[marked.coll.database.name][marked.coll.name]


def _gather(fn: Any, args: list[Any]) -> Any:
    async def main() -> tuple[list[Any], LagTicker]:
        with LagTicker() as ticker:
            out = await asyncio.gather(*[fn(a) for a in args], return_exceptions=True)
        return [type(o) if isinstance(o, BaseException) else o for o in out], ticker

    return main


# -- hangs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "loop_kind"),
    [*[("socketTimeoutMS", kind) for kind in LOOP_KINDS], ("CSOT", "asyncio")],
)
def test_hung_server_times_out_each_call_like_plain_then_recovers(bound, loop_kind, env):
    proxy, make_client, marked, cmap, outcome = (
        env.proxy, env.make_client, env.marked, env.cmap, env.outcome
    )
    opts = {"socketTimeoutMS": 300} if bound == "socketTimeoutMS" else {}
    plain_c = _coll(make_client(proxy.uri, **opts), marked)
    plain_c.find_one({})
    client, rec = _warm(make_client, proxy, cmap, N, **opts)
    pc = _coll(client, marked)

    def find(i: int, c: Any = pc) -> Any:
        if bound == "CSOT":
            with pymongo.timeout(0.3):
                return c.find_one({"mark": marked.marks[i]})
        return c.find_one({"mark": marked.marks[i]})

    proxy.hang()
    expected = outcome(lambda: find(0, plain_c))
    assert isinstance(expected, type) and issubclass(expected, NetworkTimeout), expected
    hung, ticker = run_on(loop_kind, _gather(motorpatch.green(find), list(range(N))))
    assert hung == [expected] * N
    assert ticker.max < 0.15, f"the loop stalled {ticker.max:.3f}s while the server hung"
    broken = rec.closed_ids()
    assert len(broken) >= N, rec.closed  # every timed-out connection was closed
    proxy.resume()
    rec.checked_out.clear()
    again, _ = run_on(loop_kind, _gather(motorpatch.green(find), list(range(N))))
    assert again == [marked.doc(i) for i in range(N)]
    assert not broken & set(rec.checked_out), "a timed-out connection was used again"
    assert rec.used_after_close() == []


def test_hung_server_without_timeouts_parks_until_cancelled(env):
    """No timeout at all: plain PyMongo would wait forever; green calls park and cancel."""
    proxy, make_client, marked, cmap = env.proxy, env.make_client, env.marked, env.cmap
    client, rec = _warm(make_client, proxy, cmap, N)
    pc = _coll(client, marked)
    find = motorpatch.green(lambda i: pc.find_one({"mark": marked.marks[i]}))
    proxy.hang()

    async def main() -> tuple[list[Any], LagTicker]:
        seen = proxy.requests
        with LagTicker() as ticker:
            tasks = [asyncio.ensure_future(find(i)) for i in range(N)]
            await asyncio.to_thread(proxy.wait_requests, seen + N)  # all sent, none answered
            ticks = len(ticker.lags)
            await asyncio.sleep(0.2)  # a window to count ticks in, not a synchronisation
            assert len(ticker.lags) > ticks, "the loop did not tick while calls were parked"
            for t in tasks:
                t.cancel()
            out = await asyncio.gather(*tasks, return_exceptions=True)
        return [type(o) for o in out], ticker

    cancelled, ticker = run_on("asyncio", main)
    assert cancelled == [asyncio.CancelledError] * N
    assert ticker.max < 0.5
    assert len(rec.closed_ids()) >= N  # a cancelled read's connection is closed, not pooled
    proxy.resume()
    again, _ = run_on("asyncio", _gather(find, list(range(N))))
    assert again == [marked.doc(i) for i in range(N)]


def test_blackholed_server_times_out_like_plain_then_recovers(loop_kind, env):
    proxy, make_client, marked, cmap, outcome = (
        env.proxy, env.make_client, env.marked, env.cmap, env.outcome
    )
    plain_c = _coll(make_client(proxy.uri, socketTimeoutMS=300), marked)
    plain_c.find_one({})
    client, _ = _warm(make_client, proxy, cmap, N, socketTimeoutMS=300)
    pc = _coll(client, marked)
    proxy.blackhole()
    expected = outcome(lambda: plain_c.find_one({"mark": marked.marks[0]}))
    assert expected is NetworkTimeout
    find = motorpatch.green(lambda i: pc.find_one({"mark": marked.marks[i]}))
    got, ticker = run_on(loop_kind, _gather(find, list(range(N))))
    assert got == [expected] * N
    assert proxy.faults["blackhole"] >= N + 1
    assert ticker.max < 0.5, f"the loop stalled {ticker.max:.3f}s"
    proxy.blackhole(False)
    again, _ = run_on(loop_kind, _gather(find, list(range(N))))
    assert again == [marked.doc(i) for i in range(N)]


# -- resets and cut replies -------------------------------------------------------------------

FAULTS = {  # id: (arm the proxy for one mark, is the request applied by the server?)
    "reset-mid-request": (lambda p, m: p.reset(on="request", match=m), False),
    "reset-mid-reply-header": (lambda p, m: p.reset(on="reply", after_bytes=8, match=m), True),
    "reset-mid-reply-body": (lambda p, m: p.reset(on="reply", after_bytes=40, match=m), True),
    "cut-reply": (lambda p, m: p.cut_reply(30, match=m), True),
}


ROUNDS = 3  # rounds of N overlapping calls, one fault per round
# Every fault on asyncio; one of them on each other loop kind too (each case costs seconds).
READ_CASES = [("asyncio", f) for f in FAULTS] + [
    (kind, "reset-mid-reply-body") for kind in ("tornado", "uvloop")
]


@pytest.mark.parametrize(("loop_kind", "fault"), READ_CASES)
def test_retryable_reads_survive_the_fault_like_plain(loop_kind, fault, env):
    """A read hit by the fault retries and gets its own reply; overlapping reads all succeed.

    Every fault here is a network error that clears the pool (SDAM), so calls
    in flight meet a paused pool and retry too, in plain threads as in green code.
    """
    proxy, make_client, marked, cmap = env.proxy, env.make_client, env.marked, env.cmap
    arm, _ = FAULTS[fault]
    proxy.delay = 0.05  # the N calls of a round overlap
    expected = [marked.doc((r * N + i) % 200) for r in range(ROUNDS) for i in range(N)]

    def read(r: int, i: int, c: Any) -> Any:
        return c.find_one({"mark": marked.marks[(r * N + i) % 200]})

    def run_plain() -> list[Any]:
        c = _coll(make_client(proxy.uri, maxPoolSize=N), marked)
        out = []
        with ThreadPoolExecutor(N) as pool:
            for r in range(ROUNDS):
                arm(proxy, marked.marks[r * N % 200].encode())
                out += list(pool.map(lambda i, r=r: read(r, i, c), range(N)))
        return out

    assert run_plain() == expected
    assert sum(proxy.faults.values()) == ROUNDS, "the plain scenario did not inject its faults"

    client, rec = _warm(make_client, proxy, cmap, N)
    pc = _coll(client, marked)
    green_read = motorpatch.green(lambda ri: read(*ri, pc))

    async def main() -> tuple[list[Any], LagTicker]:
        out: list[Any] = []
        with LagTicker() as ticker:
            for r in range(ROUNDS):
                arm(proxy, marked.marks[r * N % 200].encode())
                out += await asyncio.gather(*[green_read((r, i)) for i in range(N)])
        return out, ticker

    got, ticker = run_on(loop_kind, main)
    assert got == expected  # every call its own reply, the faulted ones after a retry
    assert sum(proxy.faults.values()) == 2 * ROUNDS and proxy.armed == 0
    assert ticker.max < 0.5, f"the loop stalled {ticker.max:.3f}s"
    _assert_broken_connections_discarded(rec, client, ROUNDS)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_non_retryable_calls_raise_autoreconnect_like_plain(fault, env):
    """A write (standalone: not retryable) and a read with retryReads=False raise AutoReconnect.

    Overlapping retryable reads in the same rounds still get their own replies.
    """
    proxy, make_client, marked, cmap, outcome = (
        env.proxy, env.make_client, env.marked, env.cmap, env.outcome
    )
    arm, applied = FAULTS[fault]
    coll = marked.coll
    proxy.delay = 0.05
    plain_c = _coll(make_client(proxy.uri), marked)
    plain_noretry = _coll(make_client(proxy.uri, retryReads=False), marked)
    arm(proxy, b"plain-new")
    expected_write = outcome(lambda: plain_c.insert_one({"_id": "plain-new"}))
    arm(proxy, marked.marks[199].encode())
    expected_read = outcome(lambda: plain_noretry.find_one({"mark": marked.marks[199]}))
    assert expected_write is expected_read
    assert issubclass(expected_read, AutoReconnect), expected_read

    client, rec = _warm(make_client, proxy, cmap, N)
    noretry = _warm(make_client, proxy, cmap, 1, retryReads=False)[0]
    pc, pc_noretry = _coll(client, marked), _coll(noretry, marked)

    @motorpatch.green
    def call(r: int, i: int) -> Any:
        if i == 0:
            return outcome(lambda: pc.insert_one({"_id": f"new-{r:03d}"}))
        if i == 1:
            return outcome(lambda: pc_noretry.find_one({"mark": marked.marks[r]}))
        return pc.find_one({"mark": marked.marks[r * N + i]})

    async def main() -> tuple[list[Any], LagTicker]:
        out: list[Any] = []
        with LagTicker() as ticker:
            for r in range(ROUNDS):
                arm(proxy, f"new-{r:03d}".encode())
                arm(proxy, marked.marks[r].encode())
                out += await asyncio.gather(*[call(r, i) for i in range(N)])
        return out, ticker

    got, ticker = run_on("asyncio", main)
    assert got == [
        expected_write if i == 0 else expected_read if i == 1 else marked.doc(r * N + i)
        for r in range(ROUNDS)
        for i in range(N)
    ]
    assert ticker.max < 0.5, f"the loop stalled {ticker.max:.3f}s"
    # The server applied the write exactly when the request reached it, plain and green.
    assert coll.count_documents({"_id": "plain-new"}) == int(applied)
    assert coll.count_documents({"_id": {"$regex": "^new-"}}) == ROUNDS * int(applied)
    _assert_broken_connections_discarded(rec, client, ROUNDS)
    # The client recovers by itself: the same calls now succeed.
    ok, _ = run_on("asyncio", _gather(motorpatch.green(lambda i: pc.find_one({"_id": i})), [7]))
    assert ok == [marked.doc(7)]


def _assert_broken_connections_discarded(rec: Any, client: Any, faults: int) -> None:
    """Each fault closed its connection ("error" or, after a pool clear, "stale") for good."""
    closed = rec.closed_ids()
    assert len(closed) >= faults, rec.closed
    assert all(reason in ("error", "stale") for _, reason in rec.closed), rec.closed
    assert rec.used_after_close() == []
    assert not closed & {c.id for c in _pool(client).conns}, "a broken connection is pooled"


# -- drip ------------------------------------------------------------------------------------------


def test_dripped_replies_decode_exactly_and_the_loop_runs(loop_kind, env):
    proxy, make_client, marked = env.proxy, env.make_client, env.marked
    coll = marked.coll
    coll.insert_many([{"_id": f"big-{i}", "blob": chr(65 + i) * (100 * i)} for i in range(10)])
    pc = _coll(make_client(proxy.uri), marked)
    proxy.drip()

    @motorpatch.green
    def read(i: int) -> Any:
        if i % 2:
            return pc.find_one({"_id": f"big-{i % 10}"})
        return pc.find_one({"mark": marked.marks[i]})

    got, ticker = run_on(loop_kind, _gather(read, list(range(N))))
    assert got == [
        {"_id": f"big-{i % 10}", "blob": chr(65 + i % 10) * (100 * (i % 10))}
        if i % 2
        else marked.doc(i)
        for i in range(N)
    ]
    assert len(ticker.lags) >= 20 and ticker.max < 0.3, (len(ticker.lags), ticker.max)

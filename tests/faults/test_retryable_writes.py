"""Retryable writes hit by a wire fault retry and succeed, plain and green.

nx-27017 is a standalone, where PyMongo never retries writes. Here a mockupdb
server answers as a replica-set primary (``setName``, sessions), behind the
fault proxy with ``directConnection``: PyMongo then retries a write once after
a network error. One write per round is hit by the fault (a reset before the
request, in mid-reply, or a cut reply) while other writes overlap it; every
write must be acknowledged, and the server must have seen the faulted one twice
when the first attempt reached it (the retry carries the same ``txnNumber``).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from mockupdb import MockupDB

import motorpatch
from tests.support.loops import LagTicker, run_on
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.usefixtures("installed")

N, ROUNDS = 10, 2
FAULTS = {  # id: (arm the proxy for one marker, does the first attempt reach the server?)
    "reset-mid-request": (lambda p, m: p.reset(on="request", match=m), False),
    "reset-mid-reply": (lambda p, m: p.reset(on="reply", after_bytes=20, match=m), True),
    "cut-reply": (lambda p, m: p.cut_reply(30, match=m), True),
}


class _Primary:
    """A mockupdb replica-set primary that acknowledges inserts and counts them by _id."""

    def __init__(self) -> None:
        self.server = MockupDB()
        self.inserts: Counter[str] = Counter()
        self.txn_numbers: dict[str, set[int]] = {}
        self._lock = threading.Lock()
        self.server.autoresponds(self._respond)
        self.server.run()

    def _respond(self, request: Any) -> bool:
        name = next(iter(request.doc))
        if name.lower() in ("hello", "ismaster"):
            return bool(request.ok(
                isWritablePrimary=True, ismaster=True, helloOk=True, setName="rs0",
                hosts=[f"127.0.0.1:{self.server.port}"], minWireVersion=0, maxWireVersion=21,
                logicalSessionTimeoutMinutes=30,
            ))
        if name == "insert":
            with self._lock:
                for doc in request.doc["documents"]:
                    self.inserts[doc["_id"]] += 1
                    self.txn_numbers.setdefault(doc["_id"], set()).add(
                        request.doc.get("txnNumber"))
            return bool(request.ok(n=len(request.doc["documents"])))
        return bool(request.ok())


@pytest.fixture
def primary() -> Iterator[tuple[_Primary, FaultProxy]]:
    p = _Primary()
    proxy = FaultProxy(p.server.port).start()
    try:
        yield p, proxy
    finally:
        proxy.stop()
        p.server.stop()


def _uri(proxy: FaultProxy) -> str:
    return f"{proxy.uri}/?directConnection=true"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_retryable_writes_retry_and_succeed_like_plain(fault, primary, make_client):
    p, proxy = primary
    arm, reaches = FAULTS[fault]
    proxy.delay = 0.02  # the writes of a round overlap

    def ids(mode: str, r: int) -> list[str]:
        return [f"{mode}-{r}-{i:03d}" for i in range(N)]

    plain_c = make_client(_uri(proxy), socketTimeoutMS=10000).db.coll  # bounds a regression
    with ThreadPoolExecutor(N) as pool:
        for r in range(ROUNDS):
            arm(proxy, ids("plain", r)[0].encode())
            acked = list(pool.map(lambda _id: plain_c.insert_one({"_id": _id}).acknowledged,
                                  ids("plain", r)))
            assert acked == [True] * N

    green_c = make_client(_uri(proxy), socketTimeoutMS=10000).db.coll
    insert = motorpatch.green(lambda _id: green_c.insert_one({"_id": _id}).acknowledged)

    async def main() -> tuple[list[bool], LagTicker]:
        out: list[bool] = []
        with LagTicker() as ticker:
            for r in range(ROUNDS):
                arm(proxy, ids("green", r)[0].encode())
                out += await asyncio.gather(*[insert(_id) for _id in ids("green", r)])
        return out, ticker

    acked, ticker = run_on("asyncio", main)
    assert acked == [True] * (N * ROUNDS)
    assert sum(proxy.faults.values()) == 2 * ROUNDS
    assert ticker.max < 0.5, f"the loop stalled {ticker.max:.3f}s"
    for mode in ("plain", "green"):
        for r in range(ROUNDS):
            faulted, *others = ids(mode, r)
            assert p.inserts[faulted] == (2 if reaches else 1), (mode, p.inserts[faulted])
            assert len(p.txn_numbers[faulted]) == 1  # the retry is the same transaction
            assert all(p.inserts[_id] >= 1 for _id in others)

"""Replica sets under green code, compared with the same code in plain PyMongo.

Three MockupDB members play a replica set (see ``conftest.py``): reads with
each read preference reach the members PyMongo's server selection allows,
writes reach the primary; the primary steps down while operations are in
flight (error replies and connection resets), retryable reads and writes
retry onto the new primary, non-retryable ones raise the same exception
classes as plain PyMongo, and the loop keeps ticking while server selection
waits for the election. Without a primary, green server selection parks
until ``serverSelectionTimeoutMS`` (then ``ServerSelectionTimeoutError``) or
until a primary appears.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError
from pymongo.read_preferences import Nearest, ReadPreference, Secondary

import motorpatch
from motorpatch.socket_shim.green_socket import GreenSocket
from tests.support.loops import LagTicker, run_on
from tests.support.pymongo_compat import pooled_socket

pytestmark = pytest.mark.usefixtures("installed")

READ_PREFERENCES: dict[str, tuple[Any, set[str]]] = {
    "primary": (ReadPreference.PRIMARY, {"m0"}),
    "primaryPreferred": (ReadPreference.PRIMARY_PREFERRED, {"m0"}),
    "secondary": (ReadPreference.SECONDARY, {"m1", "m2"}),
    "secondaryPreferred": (ReadPreference.SECONDARY_PREFERRED, {"m1", "m2"}),
    "nearest": (ReadPreference.NEAREST, {"m0", "m1", "m2"}),
    "secondary dc=west": (Secondary(tag_sets=[{"dc": "west"}]), {"m2"}),
    "nearest dc=east": (Nearest(tag_sets=[{"dc": "east"}]), {"m0", "m1"}),
}


def _green_sockets(client: Any) -> list[bool]:
    return [
        type(pooled_socket(conn)) is GreenSocket
        for server in client._get_topology()._servers.values()
        for conn in server.pool.conns
    ]


def test_reads_follow_read_preference_and_writes_go_to_the_primary(replica_set, new_client):
    rs, reads = replica_set(), 6

    def route(coll: Any) -> dict[str, set[str]]:
        reached = {}
        for label, (pref, _) in READ_PREFERENCES.items():
            c = coll.with_options(read_preference=pref)
            reached[label] = {c.find_one({"n": i})["member"] for i in range(reads)}
        for i in range(reads):
            coll.insert_one({"i": i})
        return reached

    plain = route(new_client(rs.uri).db.c)
    inserts_plain = rs.received("insert")

    green_client = new_client(rs.uri)

    async def main() -> dict[str, set[str]]:
        coll = green_client.db.c
        reached: dict[str, set[str]] = {}
        for label, (pref, _) in READ_PREFERENCES.items():
            c = coll.with_options(read_preference=pref)
            docs = await asyncio.gather(
                *[motorpatch.green(c.find_one)({"n": i}) for i in range(reads)]
            )
            reached[label] = {d["member"] for d in docs}
        await asyncio.gather(*[motorpatch.green(coll.insert_one)({"i": i}) for i in range(reads)])
        return reached

    green = run_on("asyncio", main, timeout=30)
    for label, (_, allowed) in READ_PREFERENCES.items():
        assert plain[label] and plain[label] <= allowed, (label, plain[label])
        assert green[label] and green[label] <= allowed, (label, green[label])
    assert inserts_plain == {"m0": reads, "m1": 0, "m2": 0}
    assert rs.received("insert") == {"m0": 2 * reads, "m1": 0, "m2": 0}
    assert _green_sockets(green_client) and all(_green_sockets(green_client))


# -- the primary steps down mid-load ----------------------------------------------------

KINDS = ("insert", "find", "update_many", "delete_many")
IN_FLIGHT = 16  # operations in flight on the primary when it steps down
LATE = 8  # operations started during the election (no primary known)
ELECTION = 0.6  # seconds without a primary


def _ops(n: int, prefix: str) -> list[tuple[str, str, str]]:
    """(comment, kind, failure): alternate error replies and connection resets.

    Only the operations held on the primary when it steps down fail that way
    (see ``Topology.answer``); the "late" ones carry no failure suffix.
    """
    out = []
    for i in range(n):
        failure = ("error", "hangup")[(i // len(KINDS)) % 2] if prefix == "op" else ""
        out.append((f"{prefix}{i}-{failure}".rstrip("-"), KINDS[i % len(KINDS)], failure))
    return out


def _primary_known(coll: Any) -> bool:
    return bool(coll.database.client._topology.description.has_writable_server())


def _run_op(coll: Any, comment: str, kind: str) -> str:
    try:
        if kind == "insert":
            coll.insert_one({"c": comment}, comment=comment)
        elif kind == "find":
            coll.find_one({"c": comment}, comment=comment)
        elif kind == "update_many":
            coll.update_many({"c": comment}, {"$set": {"x": 1}}, comment=comment)
        else:
            coll.delete_many({"c": comment}, comment=comment)
        return "ok"
    except PyMongoError as exc:
        return type(exc).__name__


def _expected(failure: str, kind: str) -> str:
    if kind in ("insert", "find"):
        return "ok"  # retryable: retried on the new primary
    return "NotPrimaryError" if failure == "error" else "AutoReconnect"


def _stepdown_plain(rs: Any, coll: Any) -> dict[str, Any]:
    first, late = _ops(IN_FLIGHT, "op"), _ops(LATE, "late")
    rs.hold = True
    with ThreadPoolExecutor(IN_FLIGHT + LATE) as pool:
        futures = {c: pool.submit(_run_op, coll, c, k) for c, k, _ in first}
        rs.wait_held(IN_FLIGHT)
        rs.step_down(1, ELECTION)
        _wait_until(lambda: not _primary_known(coll))  # late ones find no primary
        late_futures = {c: pool.submit(_run_op, coll, c, k) for c, k, _ in late}
        outcomes = {c: f.result(30) for c, f in {**futures, **late_futures}.items()}
    return {"outcomes": outcomes}


def _stepdown_green(rs: Any, coll: Any, loop_kind: str) -> dict[str, Any]:
    first, late = _ops(IN_FLIGHT, "op"), _ops(LATE, "late")
    op = motorpatch.green(_run_op)

    async def main() -> dict[str, Any]:
        rs.hold = True
        tasks = {c: asyncio.ensure_future(op(coll, c, k)) for c, k, _ in first}
        await asyncio.get_running_loop().run_in_executor(None, rs.wait_held, IN_FLIGHT)
        with LagTicker() as ticker:
            stepped_down = rs.step_down(1, ELECTION)
            while _primary_known(coll):  # late ones find no primary
                await asyncio.sleep(0.001)  # observing the topology, not synchronising
            tasks.update({c: asyncio.ensure_future(op(coll, c, k)) for c, k, _ in late})
            done = await asyncio.gather(*tasks.values())
            recovered = time.monotonic()
        outcomes = dict(zip(tasks, done, strict=True))
        return {"outcomes": outcomes, "ticker": ticker, "window": recovered - stepped_down}

    return run_on(loop_kind, main, timeout=60)


def test_primary_steps_down_mid_load(replica_set, new_client, loop_kind):
    plain_rs, green_rs = replica_set(), replica_set()
    plain = _stepdown_plain(plain_rs, new_client(plain_rs.uri).db.c)
    green_client = new_client(green_rs.uri)
    green = _stepdown_green(green_rs, green_client.db.c, loop_kind)

    expected = {c: _expected(f, k) for c, k, f in _ops(IN_FLIGHT, "op")}
    expected.update({c: "ok" for c, _, _ in _ops(LATE, "late")})
    assert plain["outcomes"] == expected  # PyMongo's own behaviour, the reference
    assert green["outcomes"] == plain["outcomes"]

    # Every first attempt hit the old primary; every retry went to the new one.
    attempts = Counter(comment for _, _, comment in green_rs.log)
    retried = sorted(c for c, n in attempts.items() if n > 1)
    assert retried == sorted(c for c, k, _ in _ops(IN_FLIGHT, "op") if k in ("insert", "find"))
    assert max(attempts.values()) == 2
    assert {m for m, _, c in green_rs.log if c in retried and c.startswith("op")} == {"m0", "m1"}
    assert {m for m, _, c in green_rs.log if c.startswith("late")} == {"m1"}
    assert Counter(c for _, _, c in plain_rs.log) == attempts

    # The loop kept ticking while server selection waited for the election.
    ticker = green["ticker"]
    assert green["window"] >= ELECTION
    assert len(ticker.lags) > 50, f"{len(ticker.lags)} ticks in {green['window']:.2f}s"
    assert ticker.max < 0.1, f"loop stalled for {ticker.max:.3f}s during the election"
    failed = Counter(v for v in green["outcomes"].values() if v != "ok")
    print(  # the figures quoted in the docs and the report (pytest -s)
        f"\nFAILOVER[{loop_kind}] attempted={len(green['outcomes'])} "
        f"commands={sum(attempts.values())} retried={len(retried)} failed={dict(failed)} "
        f"election_window={green['window']:.2f}s worst_lag={ticker.max * 1000:.1f}ms "
        f"p99_lag={ticker.percentile(99) * 1000:.1f}ms ticks={len(ticker.lags)}"
    )

    # After the failover, many concurrent green calls succeed, overlapping.
    n, delay = 100, 0.05
    green_rs.delay = delay
    coll = green_client.db.c

    async def after() -> tuple[list[str], float]:
        start = time.perf_counter()
        kinds = ("insert", "find")
        out = await asyncio.gather(
            *[motorpatch.green(_run_op)(coll, f"after{i}", kinds[i % 2]) for i in range(n)]
        )
        return out, time.perf_counter() - start

    out, elapsed = run_on(loop_kind, after, timeout=60)
    assert out == ["ok"] * n
    assert {m for m, _, c in green_rs.log if c and c.startswith("after")} == {"m1"}
    assert elapsed < n * delay / 3, f"{n} calls of {delay}s took {elapsed:.2f}s: no overlap"


# -- no primary for a while -------------------------------------------------------------


def test_no_primary_selection_parks_until_timeout(replica_set, new_client, loop_kind):
    rs, n, timeout = replica_set(primary=None), 10, 0.6
    plain = _run_op(new_client(rs.uri, serverSelectionTimeoutMS=600).db.c, "p", "insert")
    coll = new_client(rs.uri, serverSelectionTimeoutMS=int(timeout * 1000)).db.c

    async def main() -> tuple[list[Any], float, LagTicker]:
        with LagTicker() as ticker:
            start = time.perf_counter()
            out = await asyncio.gather(
                *[motorpatch.green(coll.insert_one)({"i": i}) for i in range(n)],
                return_exceptions=True,
            )
            return out, time.perf_counter() - start, ticker

    out, elapsed, ticker = run_on(loop_kind, main, timeout=30)
    assert plain == "ServerSelectionTimeoutError"
    assert [type(o) for o in out] == [ServerSelectionTimeoutError] * n
    assert timeout <= elapsed < 5 * timeout, f"{n} selections took {elapsed:.2f}s: no overlap"
    assert len(ticker.lags) > 100 and ticker.max < timeout / 5, f"loop stalled {ticker.max:.3f}s"
    assert rs.received("insert") == {"m0": 0, "m1": 0, "m2": 0}


def test_waiting_calls_resume_when_a_primary_appears(replica_set, new_client):
    n = 10
    plain_rs, green_rs = replica_set(primary=None), replica_set(primary=None)

    plain_client = new_client(plain_rs.uri)
    plain_coll = plain_client.db.c
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(_run_op, plain_coll, f"w{i}", "insert") for i in range(n)]
        _wait_parked(plain_client, n)
        plain_rs.elect(2)
        plain = [f.result(30) for f in futures]

    green_client = new_client(green_rs.uri)
    coll = green_client.db.c

    async def main() -> tuple[list[str], bool, float, LagTicker]:
        with LagTicker() as ticker:
            tasks = [
                asyncio.ensure_future(motorpatch.green(_run_op)(coll, f"w{i}", "insert"))
                for i in range(n)
            ]
            deadline = time.monotonic() + 10
            while len(green_client._topology._condition._waiters) < n:
                assert time.monotonic() < deadline, "the green calls never waited in selection"
                await asyncio.sleep(0.001)  # observing the topology, not synchronising
            none_done = not any(t.done() for t in tasks)
            green_rs.elect(2)
            elected = time.monotonic()
            out = await asyncio.gather(*tasks)
            return out, none_done, time.monotonic() - elected, ticker

    out, none_done, resumed_after, ticker = run_on("asyncio", main, timeout=30)
    assert plain == ["ok"] * n
    assert out == plain and none_done
    # serverSelectionTimeoutMS is 10 s: they resumed on the monitor's news, not a timeout.
    assert resumed_after < 5, f"resumed {resumed_after:.2f}s after the election"
    assert green_rs.received("insert") == {"m0": 0, "m1": 0, "m2": n}
    # The loop ticked while they waited: at least a tenth of the 1 ms ticks, never stalled.
    assert len(ticker.lags) >= resumed_after * 100, (len(ticker.lags), resumed_after)
    assert ticker.max < 0.1, f"loop stalled {ticker.max:.3f}s"


def _wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the topology never reached the awaited state"
        time.sleep(0.001)  # observing the topology, not synchronising


def _wait_parked(client: Any, n: int) -> None:
    _wait_until(lambda: len(client._topology._condition._waiters) >= n)

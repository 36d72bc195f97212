"""Sessions and transactions, plain and green: causal consistency, with_transaction, manual.

nx-27017 0.8.1 accepts transactions (commit and abort work; it does not isolate: an
uncommitted write is visible outside the transaction) and returns no operationTime,
so causal consistency and the TransientTransactionError retry path are scripted on
mockupdb (a one-member replica-set primary). The last test shows that the
``with_transaction`` back-off sleep parks: other green calls complete during it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pymongo
import pytest
from _mock import MockRun, Scripted, mock_env, name_of, steps
from bson import Timestamp
from pymongo.errors import InvalidOperation, OperationFailure

import motorpatch
from tests.support.loops import LagTicker, run_on

TRANSIENT = {
    "ok": 0,
    "code": 251,
    "codeName": "NoSuchTransaction",
    "errmsg": "transient, try again",
    "errorLabels": ["TransientTransactionError"],
}
UNKNOWN_COMMIT = {
    "ok": 0,
    "code": 64,
    "codeName": "WriteConcernFailed",
    "errmsg": "waiting for replication timed out",
    "errorLabels": ["UnknownTransactionCommitResult"],
}


class Boom(Exception):
    pass


# -- on nx-27017 ---------------------------------------------------------------------


def test_causally_consistent_session_reads_its_writes(parity):
    def scenario(coll: Any) -> Any:
        with coll.database.client.start_session(causal_consistency=True) as session:
            coll.insert_one({"_id": 1, "n": 1}, session=session)
            coll.update_one({"_id": 1}, {"$inc": {"n": 1}}, session=session)
            seen = coll.find_one({"_id": 1}, session=session)
            count = coll.count_documents({}, session=session)
            return seen, count, session.options.causal_consistency, session.has_ended

    assert parity.check(scenario).value == ({"_id": 1, "n": 2}, 1, True, False)


def test_with_transaction_commits(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_one({"_id": "a", "balance": 100})

        def transfer(session: Any) -> str:
            coll.update_one({"_id": "a"}, {"$inc": {"balance": -30}}, session=session)
            coll.insert_one({"_id": "b", "balance": 30}, session=session)
            return "moved"

        with coll.database.client.start_session() as session:
            result = session.with_transaction(transfer)
            state = session.in_transaction
        return result, state, list(coll.find().sort("_id", 1))

    assert parity.check(scenario).value == (
        "moved",
        False,
        [{"_id": "a", "balance": 70}, {"_id": "b", "balance": 30}],
    )


def test_with_transaction_callback_raising_aborts(parity):
    def scenario(coll: Any) -> Any:
        # Seeded first: nx-27017's abort also drops a collection the transaction created.
        coll.insert_one({"_id": "seed"})

        def callback(session: Any) -> None:
            coll.insert_one({"_id": "doomed"}, session=session)
            raise Boom("callback failed")

        with coll.database.client.start_session() as session:
            try:
                session.with_transaction(callback)
            except Boom as exc:
                raised = str(exc)
            state = session.in_transaction
        return raised, state, coll.count_documents({})

    assert parity.check(scenario).value == ("callback failed", False, 1)


def test_manual_start_commit_abort(parity):
    def scenario(coll: Any) -> Any:
        client = coll.database.client
        with client.start_session() as session:
            session.start_transaction()
            coll.insert_one({"_id": 1}, session=session)
            session.commit_transaction()

            session.start_transaction()
            coll.insert_one({"_id": 2}, session=session)
            session.abort_transaction()

            with session.start_transaction():  # commits on a clean exit
                coll.insert_one({"_id": 3}, session=session)
            try:
                with session.start_transaction():  # aborts on an exception
                    coll.insert_one({"_id": 4}, session=session)
                    raise Boom
            except Boom:
                pass
        return sorted(d["_id"] for d in coll.find())

    assert parity.check(scenario).value == [1, 3]


@pytest.mark.parametrize(
    "misuse",
    ["commit without a transaction", "start twice", "abort twice", "operation in ended session"],
)
def test_transaction_misuse_raises_alike(parity, misuse):
    def scenario(coll: Any) -> Any:
        session = coll.database.client.start_session()
        try:
            if misuse == "commit without a transaction":
                session.commit_transaction()
            elif misuse == "start twice":
                session.start_transaction()
                session.start_transaction()
            elif misuse == "abort twice":
                session.start_transaction()
                coll.insert_one({"_id": 1}, session=session)
                session.abort_transaction()
                session.abort_transaction()
            else:
                session.end_session()
                coll.find_one({}, session=session)
        finally:
            session.end_session()
            coll.insert_one({"_id": "after"})  # leaves a pooled connection to inspect

    assert parity.check(scenario).error is InvalidOperation


def test_an_error_inside_a_transaction(parity):
    """A duplicate key inside with_transaction: the callback's error propagates, no commit."""

    def scenario(coll: Any) -> Any:
        coll.insert_one({"_id": 1})

        def callback(session: Any) -> None:
            coll.insert_one({"_id": 2}, session=session)
            coll.insert_one({"_id": 1}, session=session)

        with coll.database.client.start_session() as session:
            try:
                session.with_transaction(callback)
            except OperationFailure as exc:
                return type(exc).__name__, exc.code, sorted(d["_id"] for d in coll.find())
        return None

    assert parity.check(scenario).value == ("DuplicateKeyError", 11000, [1])


# -- scripted on mockupdb --------------------------------------------------------------


def _txn_log(server: Scripted) -> list[Any]:
    """(command, txnNumber, startTransaction, writeConcern) of each transaction command."""
    rows = []
    for _, name, doc in server.log:
        if "txnNumber" in doc:
            rows.append(
                (name, doc["txnNumber"], doc.get("startTransaction"), doc.get("writeConcern"))
            )
    return rows


def test_causal_consistency_sends_after_cluster_time(parity, make_client):
    """The second read of a causally consistent session waits for the first one's time."""

    def reply(request: Any) -> bool:
        if name_of(request) == "find":
            return bool(
                request.ok(
                    cursor={"id": 0, "ns": "motorpatch_parity.things", "firstBatch": []},
                    operationTime=Timestamp(1700000000, 7),
                )
            )
        return False

    def scenario(run: MockRun) -> Any:
        with run.client.start_session(causal_consistency=True) as session:
            run.coll.find_one({}, session=session)
            run.coll.find_one({}, session=session)
            optime = session.operation_time
        concerns = [doc.get("readConcern") for doc in run.server.commands("find")]
        return optime, concerns

    out = parity.check(scenario, mock_env(parity, make_client, lambda: Scripted(reply)))
    assert out.value == (
        Timestamp(1700000000, 7),
        [None, {"afterClusterTime": Timestamp(1700000000, 7)}],
    )


def test_with_transaction_retries_transient_errors(parity, make_client):
    """Commit fails with TransientTransactionError twice: the whole transaction reruns."""
    calls: list[str] = []

    def script() -> Scripted:
        return Scripted(steps(commitTransaction=[TRANSIENT, TRANSIENT, {"ok": 1}]))

    def scenario(run: MockRun) -> Any:
        def callback(session: Any) -> str:
            calls.append("callback")
            run.coll.insert_one({"x": 1}, session=session)
            return "committed"

        with run.client.start_session() as session:
            result = session.with_transaction(callback)
        return result, _txn_log(run.server)

    out = parity.check(scenario, mock_env(parity, make_client, script))
    result, log = out.value
    assert result == "committed"
    assert calls == ["callback"] * 6  # three attempts, in each mode
    assert [(name, start) for name, _, start, _ in log] == [
        ("insert", True),
        ("commitTransaction", None),
    ] * 3
    numbers = [n for _, n, _, _ in log]
    assert numbers[0::2] == numbers[1::2] and len(set(numbers)) == 3  # a new txn each time


def test_with_transaction_retries_an_unknown_commit_result(parity, make_client):
    """UnknownTransactionCommitResult: the commit alone is retried, with w: majority."""

    def script() -> Scripted:
        return Scripted(steps(commitTransaction=[UNKNOWN_COMMIT, {"ok": 1}]))

    def scenario(run: MockRun) -> Any:
        with run.client.start_session() as session:
            result = session.with_transaction(
                lambda s: run.coll.insert_one({"x": 1}, session=s).acknowledged
            )
        return result, _txn_log(run.server)

    result, log = parity.check(scenario, mock_env(parity, make_client, script)).value
    assert result is True
    assert [name for name, *_ in log] == ["insert", "commitTransaction", "commitTransaction"]
    assert log[1][1] == log[2][1]  # the same transaction
    assert log[2][3] == {"w": "majority", "wtimeout": 10000}


@pytest.mark.skipif(
    pymongo.version_tuple[:2] < (4, 17), reason="PyMongo < 4.17 has no back-off sleep here"
)
def test_with_transaction_back_off_lets_other_green_calls_run(make_client, server_uri):
    """While with_transaction sleeps between attempts, other green find_ones complete.

    The scripted server fails commits until it has seen one back-off (the gap between
    a failed commit's reply and the next attempt's first command) of 60 ms or more.
    Inside that gap, the loop must keep ticking and a concurrent green find_one loop
    on nx-27017 must keep completing: a blocking sleep would allow neither.
    """
    motorpatch.install(blocking="raise")
    gaps: list[tuple[float, float]] = []  # (failed commit replied, next attempt began)
    state = {"failed_at": 0.0}

    def respond(request: Any) -> bool:
        name, now = name_of(request), time.monotonic()
        if name == "insert" and state["failed_at"]:
            gaps.append((state["failed_at"], now))
            state["failed_at"] = 0.0
        longest = max((b - a for a, b in gaps), default=0)
        if name == "commitTransaction" and longest < 0.06 and len(gaps) < 40:
            request.replies(TRANSIENT)
            state["failed_at"] = time.monotonic()
            return True
        return False

    server = Scripted(respond)
    try:
        txn_client = make_client(server.uri)
        other = make_client()["motorpatch_parity"]["backoff_other"]
        done: list[float] = []
        stop = asyncio.Event()

        @motorpatch.green
        def transaction() -> str:
            with txn_client.start_session() as session:
                return str(
                    session.with_transaction(
                        lambda s: txn_client.db.c.insert_one({"x": 1}, session=s) and "ok"
                    )
                )

        @motorpatch.green
        def one_find() -> None:
            other.find_one({})
            done.append(time.monotonic())

        async def finder() -> None:
            while not stop.is_set():
                await one_find()

        async def main() -> tuple[str, LagTicker]:
            with LagTicker() as ticker:
                task = asyncio.ensure_future(finder())
                try:
                    result = await transaction()
                finally:
                    stop.set()
                    await task
            return result, ticker

        result, ticker = run_on("asyncio", main, timeout=60)
    finally:
        server.stop()
        motorpatch.uninstall()
    assert result == "ok"
    start, end = max(gaps, key=lambda g: g[1] - g[0])
    assert end - start >= 0.06
    inside = [t for t in done if start < t < end]
    assert len(inside) >= 3, f"{len(inside)} find_ones completed in a {end - start:.3f}s back-off"
    p99 = ticker.percentile(99)
    print(
        f"back-offs {len(gaps)}, longest {end - start:.3f}s, find_ones in it {len(inside)}, "
        f"lag p99 {p99 * 1000:.1f} ms, max {ticker.max * 1000:.1f} ms"
    )
    assert p99 < 0.05, f"loop lag p99 {p99:.3f}s during the back-offs"

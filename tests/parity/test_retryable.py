"""Retryable reads and writes, plain and green, against a scripted mockupdb primary.

Each run gets a fresh one-member replica-set primary (retryable writes need one;
nx-27017 is a standalone) that fails the first attempt of an operation (connection
closed, or an error reply) and answers the retry. Both modes must retry the same
way (same commands seen by the server, same transaction numbers) and, where PyMongo
must not retry, raise the same exception class and message.
"""

from __future__ import annotations

from typing import Any

import pymongo
import pytest
from _mock import MockRun, Scripted, cursor, hangup, mock_env, steps
from pymongo.errors import AutoReconnect, NotPrimaryError, OperationFailure

NS = "motorpatch_parity.things"
NOT_PRIMARY = {
    "ok": 0,
    "code": 10107,
    "codeName": "NotWritablePrimary",
    "errmsg": "not primary",
    "errorLabels": ["RetryableWriteError"],
}
NOT_PRIMARY_READ = {k: v for k, v in NOT_PRIMARY.items() if k != "errorLabels"}
OVERLOADED = {
    "ok": 0,
    "code": 462,
    "codeName": "IngressRequestRateLimitExceeded",
    "errmsg": "overloaded",
    "errorLabels": ["SystemOverloadedError", "RetryableError"],
}
FOUND = cursor(NS, [{"_id": 1, "v": "found"}])


def _env(parity: Any, make_client: Any, servers: list[Scripted], **plan: Any) -> Any:
    options = plan.pop("client_options", {})
    return mock_env(parity, make_client, lambda: Scripted(steps(**plan)), servers, **options)


def _txn_numbers(server: Scripted, name: str) -> list[Any]:
    return [(doc.get("txnNumber"), doc["lsid"]["id"]) for doc in server.commands(name)]


def test_retryable_read_after_a_closed_connection(parity, make_client):
    servers: list[Scripted] = []

    def scenario(run: MockRun) -> Any:
        return run.coll.find_one({"_id": 1}), run.server.names()

    out = parity.check(scenario, _env(parity, make_client, servers, find=[hangup, FOUND]))
    assert out.value == ({"_id": 1, "v": "found"}, ["find", "find"])


@pytest.mark.parametrize("first", ["closed", "NotWritablePrimary"])
def test_retryable_write_is_retried_with_the_same_transaction_number(parity, make_client, first):
    servers: list[Scripted] = []
    fail = hangup if first == "closed" else NOT_PRIMARY

    def scenario(run: MockRun) -> Any:
        result = run.coll.insert_one({"_id": 7})
        numbers = _txn_numbers(run.server, "insert")
        return result.inserted_id, run.server.names(), len(numbers), len(set(numbers))

    env = _env(parity, make_client, servers, insert=[fail, {"ok": 1, "n": 1}])
    out = parity.check(scenario, env)
    assert out.value == (7, ["insert", "insert"], 2, 1)  # two attempts, one txnNumber


def test_retryable_read_after_not_writable_primary(parity, make_client):
    servers: list[Scripted] = []

    def scenario(run: MockRun) -> Any:
        return list(run.coll.find({})), run.server.names()

    out = parity.check(scenario, _env(parity, make_client, servers, find=[NOT_PRIMARY_READ, FOUND]))
    assert out.value == ([{"_id": 1, "v": "found"}], ["find", "find"])


@pytest.mark.skipif(
    pymongo.version_tuple[:2] < (4, 17), reason="PyMongo < 4.17 has no back-off sleep here"
)
def test_overload_back_off_retries_in_both_modes(parity, make_client):
    """SystemOverloadedError+RetryableError: PyMongo sleeps (back-off) and retries."""
    servers: list[Scripted] = []

    def scenario(run: MockRun) -> Any:
        return run.coll.find_one({"_id": 1}), run.server.names()

    env = _env(parity, make_client, servers, find=[OVERLOADED, OVERLOADED, FOUND])
    out = parity.check(scenario, env)
    assert out.value == ({"_id": 1, "v": "found"}, ["find"] * 3)


# -- no retry: the same error, plain and green ------------------------------------------


@pytest.mark.parametrize(
    ("plan", "call", "expect"),
    [
        pytest.param(
            {"insert": [hangup, {"ok": 1, "n": 1}], "client_options": {"retryWrites": False}},
            lambda run: run.coll.insert_one({"_id": 1}),
            (AutoReconnect, ["insert"]),
            id="retryWrites=false",
        ),
        pytest.param(
            {"update": [hangup, {"ok": 1, "n": 1, "nModified": 1}]},
            lambda run: run.coll.update_many({}, {"$set": {"a": 1}}),
            (AutoReconnect, ["update"]),
            id="update_many",
        ),
        pytest.param(
            {"update": [NOT_PRIMARY, {"ok": 1, "n": 1, "nModified": 1}]},
            lambda run: run.coll.update_many({}, {"$set": {"a": 1}}),
            (NotPrimaryError, ["update"]),
            id="update_many NotWritablePrimary",
        ),
        pytest.param(
            {"find": [hangup, FOUND], "client_options": {"retryReads": False}},
            lambda run: run.coll.find_one({}),
            (AutoReconnect, ["find"]),
            id="retryReads=false",
        ),
        pytest.param(
            {"find": [hangup]},
            lambda run: run.coll.find_one({}),
            (AutoReconnect, ["find", "find"]),
            id="retry also fails",
        ),
        pytest.param(
            {"insert": [{"ok": 0, "code": 2, "codeName": "BadValue", "errmsg": "bad"}]},
            lambda run: run.coll.insert_one({"_id": 1}),
            (OperationFailure, ["insert"]),
            id="non-retryable code",
        ),
    ],
)
def test_operations_that_cannot_retry_fail_alike(parity, make_client, plan, call, expect):
    """The scenario raises: the harness compares the class and message of both runs."""
    error, names = expect
    servers: list[Scripted] = []
    out = parity.check(call, _env(parity, make_client, servers, **dict(plan)))
    assert out.error is error, out
    assert [s.names() for s in servers] == [names, names]

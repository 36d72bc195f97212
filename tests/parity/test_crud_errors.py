"""CRUD errors: the same exception class (and message) in plain PyMongo and in green code.

Messages are compared too (with the per-run collection name hidden): the harness's
default. Errors a scenario catches itself must leave the connection usable.
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import DocumentTooLarge, DuplicateKeyError, OperationFailure, WriteError


def _seed(coll: Any, n: int) -> None:
    coll.insert_many([{"_id": i, "x": i % 5, "s": f"s{i:03d}"} for i in range(n)])


def test_duplicate_key_on_a_unique_index(parity):
    def scenario(coll: Any) -> Any:
        _seed(coll, 5)
        coll.create_index("s", unique=True)
        coll.insert_one({"_id": 100, "s": "s001"})

    out = parity.check(scenario)
    assert out.error is DuplicateKeyError, out


def test_duplicate_id(parity):
    def scenario(coll: Any) -> Any:
        _seed(coll, 5)
        coll.insert_one({"_id": 3})

    assert parity.check(scenario).error is DuplicateKeyError


def test_errors_inside_the_scenario_are_caught_and_the_connection_is_reusable(parity):
    """Errors caught by the scenario itself; the next operation on the same client works."""

    def scenario(coll: Any) -> Any:
        _seed(coll, 5)
        seen = []
        for call in (
            lambda: coll.insert_one({"_id": 1}),
            lambda: coll.update_one({"_id": 1}, {"$bogus": {"a": 1}}),
            lambda: coll.find_one({"x": {"$bogus": 1}}),
            lambda: coll.count_documents({"x": {"$bogus": 1}}),
        ):
            try:
                call()
            except OperationFailure as exc:
                seen.append((type(exc).__name__, exc.code, exc.details.get("errmsg")))
        return seen, coll.count_documents({})

    seen, count = parity.check(scenario).value
    assert [s[0] for s in seen] == [
        "DuplicateKeyError",
        "WriteError",
        "OperationFailure",
        "OperationFailure",
    ]
    assert count == 5


def test_invalid_query_operator(parity):
    def scenario(coll: Any) -> Any:
        _seed(coll, 3)
        return coll.find_one({"x": {"$bogus": 1}})

    out = parity.check(scenario)
    assert out.error is OperationFailure, out


def test_invalid_update_operator(parity):
    def scenario(coll: Any) -> Any:
        _seed(coll, 3)
        coll.update_many({}, {"$bogus": {"x": 1}})

    out = parity.check(scenario)
    assert out.error is WriteError, out  # an OperationFailure subclass


def test_client_side_validation_errors(parity):
    def scenario(coll: Any) -> Any:
        _seed(coll, 3)
        coll.replace_one({}, {"$set": {"a": 1}})

    out = parity.check(scenario)
    assert out.error is ValueError and out.message == "replacement can not include $ operators"


def test_unknown_top_level_operator(parity):
    def scenario(coll: Any) -> Any:
        _seed(coll, 3)
        return coll.find_one({"$bogus": 1})

    out = parity.check(scenario)
    if parity.nx:  # nx-27017 0.8.1 matches nothing instead of raising
        assert out.value is None
    else:
        assert out.error is OperationFailure, out


def test_document_too_large(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_one({"_id": 0})
        coll.insert_one({"_id": 1, "blob": b"x" * (17 * 1024 * 1024)})

    out = parity.check(scenario)
    assert out.error is DocumentTooLarge, out

"""Cursor, aggregation, bulk and admin parity: plain PyMongo and green code agree.

Where nx-27017 lacks a feature or answers unlike MongoDB, the scenario still runs
in both modes and must fail (or differ from MongoDB) the same way in each; the
comments name the difference.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import (
    DeleteMany,
    DeleteOne,
    InsertOne,
    ReplaceOne,
    UpdateMany,
    UpdateOne,
    monitoring,
)
from pymongo.errors import BulkWriteError, OperationFailure

BIG = 3000


class Commands(monitoring.CommandListener):
    """Counts started commands by name (the harness runs one scenario at a time)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def count_since(self, mark: int, name: str) -> int:
        return self.names[mark:].count(name)


def _seed_big(coll: Any) -> None:
    coll.insert_many([{"_id": i, "n": i, "g": i % 10, "pad": "x" * 20} for i in range(BIG)])


def test_many_get_more_round_trips(parity, loop_kind):
    commands = Commands()

    def scenario(coll: Any) -> Any:
        _seed_big(coll)
        mark = len(commands.names)
        ns = [d["n"] for d in coll.find({}, {"n": 1}, batch_size=50).sort("n", 1)]
        return {"ns": ns, "get_mores": commands.count_since(mark, "getMore")}

    out = parity.check(
        scenario, loop_kind=loop_kind, client_options={"event_listeners": [commands]}
    )
    assert out.value["ns"] == list(range(BIG))
    assert out.value["get_mores"] >= BIG // 50 - 1


def test_close_mid_iteration(parity):
    commands = Commands()

    def scenario(coll: Any) -> Any:
        _seed_big(coll)
        mark = len(commands.names)
        cursor = coll.find({}, batch_size=50).sort("n", 1)
        taken = [next(cursor)["n"] for _ in range(120)]
        cursor.close()
        after = [d["n"] for d in cursor]
        again = coll.count_documents({})  # the connection is fine after killCursors
        return {
            "taken": taken,
            "alive": cursor.alive,
            "after_close": after,
            "kills": commands.count_since(mark, "killCursors"),
            "count": again,
        }

    out = parity.check(scenario, client_options={"event_listeners": [commands]})
    assert out.value == {
        "taken": list(range(120)),
        "alive": False,
        "after_close": list(range(120, 150)),  # the rest of the batch already received
        "kills": 1,
        "count": BIG,
    }


def test_with_blocks(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_many([{"n": i} for i in range(100)])
        with coll.find({}, {"_id": 0}, batch_size=10).sort("n", -1) as cursor:
            first = [next(cursor) for _ in range(15)]
        with coll.aggregate([{"$match": {"n": {"$lt": 30}}}], batchSize=7) as agg:
            agg_n = sorted(d["n"] for d in agg)
        with coll.database.client.start_session() as session:
            in_session = coll.count_documents({}, session=session)
        return [first, cursor.alive, agg_n, agg.alive, in_session]

    out = parity.check(scenario)
    assert out.value == [
        [{"n": n} for n in range(99, 84, -1)],
        True,  # closed, but 5 documents of the last batch are still buffered
        list(range(30)),
        False,
        100,
    ]


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "Millis" not in k}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_explain(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_many([{"n": i, "g": i % 3} for i in range(50)])
        coll.create_index("g")
        plan = coll.find({"g": 1}).explain()
        return _without_timings(plan), sorted(plan)

    out = parity.check(scenario)
    plan, keys = out.value
    assert "queryPlanner" in keys
    assert plan["queryPlanner"]["namespace"] == "motorpatch_parity.<coll>"


def test_aggregation_group_sort_allow_disk_use(parity):
    def scenario(coll: Any) -> Any:
        _seed_big(coll)
        pipeline = [
            {"$match": {"n": {"$gte": 100}}},
            {"$group": {"_id": "$g", "count": {"$sum": 1}, "top": {"$max": "$n"}}},
            {"$sort": {"_id": -1}},
        ]
        return [
            list(coll.aggregate(pipeline, allowDiskUse=True)),
            len(list(coll.aggregate([{"$sort": {"n": 1}}], batchSize=50))),
            list(coll.aggregate([{"$match": {"g": 3}}, {"$count": "threes"}])),
        ]

    groups, many, counted = parity.check(scenario).value
    assert groups == [{"_id": g, "count": 290, "top": 2990 + g} for g in range(9, -1, -1)]
    assert many == BIG
    assert counted == [{"threes": 300}]


def test_aggregation_lookup(parity):
    def scenario(coll: Any) -> Any:
        other = coll.database[f"{coll.name}_authors"]
        try:
            other.insert_many([{"_id": "a1", "name": "Ann"}, {"_id": "a2", "name": "Bo"}])
            coll.insert_many([{"t": i, "author": f"a{i % 2 + 1}"} for i in range(4)])
            joined = coll.aggregate(
                [
                    {
                        "$lookup": {
                            "from": other.name,
                            "localField": "author",
                            "foreignField": "_id",
                            "as": "who",
                        }
                    },
                    {"$unwind": "$who"},
                    {"$project": {"_id": 0, "t": 1, "name": "$who.name"}},
                    {"$sort": {"t": 1}},
                ]
            )
            return list(joined)
        finally:
            other.drop()

    out = parity.check(scenario)
    names = ["Bo" if i % 2 else "Ann" for i in range(4)]
    assert out.value == [{"t": i, "name": n} for i, n in enumerate(names)]


def test_aggregation_stages_nx_lacks_fail_alike(parity):
    """$out and $lookup with a pipeline: OperationFailure on nx-27017, in both modes."""

    def scenario(coll: Any) -> Any:
        coll.insert_many([{"n": i} for i in range(5)])
        failures = []
        for pipeline in (
            [{"$match": {"n": 1}}, {"$out": f"{coll.name}_out"}],
            [
                {
                    "$lookup": {
                        "from": coll.name,
                        "let": {"n": "$n"},
                        "as": "j",
                        "pipeline": [{"$match": {"$expr": {"$eq": ["$n", "$$n"]}}}],
                    }
                }
            ],
            [{"$bogusStage": {}}],
        ):
            try:
                list(coll.aggregate(pipeline))
                failures.append(None)
            except OperationFailure as exc:
                failures.append(type(exc).__name__)
        coll.database.drop_collection(f"{coll.name}_out")
        return failures

    out = parity.check(scenario)
    if parity.nx:
        assert out.value == ["OperationFailure"] * 3
    else:
        assert out.value == [None, None, "OperationFailure"]


def test_bulk_write_mixed(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_many([{"_id": i, "n": i, "x": i % 3} for i in range(30)])
        result = coll.bulk_write(
            [
                InsertOne({"_id": 100, "n": 100}),
                UpdateOne({"_id": 100}, {"$set": {"x": 7}}),
                UpdateMany({"x": 1}, {"$inc": {"n": 1000}}),
                ReplaceOne({"_id": 2}, {"n": 2, "replaced": True}),
                DeleteOne({"_id": 3}),
                DeleteMany({"x": 0}),
            ]
        )
        api = result.bulk_api_result
        return api, sorted(d["n"] for d in coll.find()), coll.find_one({"_id": 2})

    api, ns, two = parity.check(scenario).value
    assert (api["nInserted"], api["nMatched"], api["nModified"], api["nRemoved"]) == (1, 12, 12, 10)
    assert len(ns) == 21
    assert ns[-1] == 1028
    assert two == {"_id": 2, "n": 2, "replaced": True}


@pytest.mark.parametrize("ordered", [True, False])
def test_bulk_write_error(parity, ordered):
    def scenario(coll: Any) -> Any:
        coll.insert_one({"_id": 1})
        ops = [InsertOne({"_id": 0}), InsertOne({"_id": 1}), InsertOne({"_id": 2})]
        try:
            coll.bulk_write(ops, ordered=ordered)
        except BulkWriteError as exc:
            errors = [(e["index"], e["code"]) for e in exc.details["writeErrors"]]
            return type(exc).__name__, errors, exc.details["nInserted"], coll.count_documents({})
        return None

    out = parity.check(scenario)
    assert out.value == ("BulkWriteError", [(1, 11000)], 1 if ordered else 2, 2 if ordered else 3)


def test_client_bulk_write(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_one({"_id": "keep"})
        result = coll.database.client.bulk_write(
            [InsertOne({"_id": "new"}, namespace=coll.full_name)]
        )
        return result.inserted_count, sorted(d["_id"] for d in coll.find())

    assert parity.check(scenario).value == (1, ["keep", "new"])


def test_large_documents_cross_many_socket_reads_and_writes(parity):
    """Multi-megabyte messages: sendall and recv_into go round several would-block waits."""

    def scenario(coll: Any) -> Any:
        blob = bytes(range(256)) * (4096 * 6)  # 6 MiB
        coll.insert_one({"_id": 1, "blob": blob})
        coll.insert_many([{"_id": i, "blob": blob[: (1 << 21) + i]} for i in range(2, 6)])
        got = coll.find_one({"_id": 1})["blob"]
        sizes = [len(d["blob"]) for d in coll.find({"_id": {"$in": [2, 3, 4, 5]}}, batch_size=2)]
        return len(got), got == blob, sorted(sizes)

    out = parity.check(scenario)
    assert out.value == (6 << 20, True, [(1 << 21) + i for i in range(2, 6)])

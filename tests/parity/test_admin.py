"""Index, collection and database management parity, and the admin errors.

Where nx-27017 answers unlike MongoDB (index names, no-op renames, missing errors),
both modes must still agree; the MongoDB answer is asserted when MONGODB_URI is set.
"""

from __future__ import annotations

from typing import Any

from pymongo import IndexModel
from pymongo.errors import CollectionInvalid, OperationFailure


def test_index_management(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_many([{"a": i, "b": -i, "u": i} for i in range(10)])
        created = [
            coll.create_index("a"),
            coll.create_index([("u", 1)], unique=True, name="u_unique"),
            coll.create_indexes([IndexModel([("a", 1), ("b", -1)], name="ab")]),
        ]
        listed = sorted((i["name"], dict(i["key"])) for i in coll.list_indexes())
        info = sorted(coll.index_information())
        coll.drop_index("ab")
        after_drop = sorted(i["name"] for i in coll.list_indexes())
        coll.drop_indexes()
        return created, listed, info, after_drop, [i["name"] for i in coll.list_indexes()]

    created, listed, info, after_drop, at_end = parity.check(scenario).value
    assert created == ["a_1", "u_unique", ["ab"]]
    assert len(listed) == len(info) == 4
    assert at_end == ["_id_"]
    if not parity.nx:  # nx-27017 names indexes idx_<collection>_<fields>, whatever was asked
        assert [name for name, _ in listed] == ["_id_", "a_1", "ab", "u_unique"]
        assert after_drop == ["_id_", "a_1", "u_unique"]


def test_collection_and_database_management(parity):
    def scenario(coll: Any) -> Any:
        db = coll.database
        made = db.create_collection(f"{coll.name}_made")
        try:
            db.create_collection(made.name)
            duplicate = None
        except CollectionInvalid as exc:
            duplicate = type(exc).__name__
        made.insert_one({"k": 1})
        made.rename(f"{coll.name}_renamed")
        names = sorted(n for n in db.list_collection_names() if n.startswith(coll.name))
        found = [db[n].count_documents({}) for n in names]
        for name in (made.name, f"{coll.name}_renamed"):
            db.drop_collection(name)
        left = sorted(n for n in db.list_collection_names() if n.startswith(coll.name))

        client = db.client
        other = client[f"{coll.name}_db"]
        other.things.insert_one({"x": 1})
        listed = other.name in client.list_database_names()
        client.drop_database(other.name)
        dropped = other.name not in client.list_database_names()
        return duplicate, names, found, left, listed, dropped

    out = parity.check(scenario)
    # nx-27017 0.8.1 answers renameCollection with ok: 1 and renames nothing.
    names = ["<coll>_made"] if parity.nx else ["<coll>_renamed"]
    assert out.value == ("CollectionInvalid", names, [1], [], True, True)


def _attempt(call: Any) -> str | None:
    try:
        call()
    except OperationFailure as exc:
        return type(exc).__name__
    return None


def test_admin_errors(parity):
    def scenario(coll: Any) -> Any:
        db = coll.database
        coll.insert_many([{"a": i, "b": i} for i in range(5)])
        coll.create_index([("b", -1)])
        target = db[f"{coll.name}_target"]
        target.insert_one({"t": 1})
        seen = {
            "drop_missing_index": _attempt(lambda: coll.drop_index("no_such_index")),
            "drop_index_by_key": _attempt(lambda: coll.drop_index([("b", -1)])),
            "rename_onto_existing": _attempt(lambda: coll.rename(target.name)),
        }
        seen["target_intact"] = target.count_documents({})
        seen["source_intact"] = coll.count_documents({})
        target.drop()
        return seen

    out = parity.check(scenario)
    # nx-27017 0.8.1: dropping a missing index and renaming onto an existing collection
    # succeed silently (the rename renames nothing).
    fails = None if parity.nx else "OperationFailure"
    expected = [fails, None, fails]
    assert [out.value[k] for k in list(out.value)[:3]] == expected
    assert (out.value["target_intact"], out.value["source_intact"]) == (1, 5)


def test_get_more_on_a_killed_cursor(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_many([{"n": i} for i in range(100)])
        cursor = coll.find({}, batch_size=10).sort("n", 1)
        first = next(cursor)["n"]
        coll.database.command("killCursors", coll.name, cursors=[cursor.cursor_id])
        rest = []
        try:
            rest.extend(d["n"] for d in cursor)
        except OperationFailure as exc:
            return first, rest, type(exc).__name__
        return first, rest, None

    out = parity.check(scenario)
    if parity.nx:  # nx-27017 0.8.1 ends the cursor instead of raising CursorNotFound
        assert out.value == (0, list(range(1, 10)), None)
    else:
        assert out.value == (0, list(range(1, 10)), "CursorNotFound")

"""Analysed causes: why a test passing plain does not pass green, or why it stalls the loop.

Filled in from the investigation of each difference (compat/README.md). Keys are
node ids or ``fnmatch`` patterns of node ids.
"""

from __future__ import annotations

from fnmatch import fnmatch

__all__ = ["cause_of"]

DIFFERENCES: dict[str, str] = {
    "test/test_crud_unified.py::TestUnifiedDistinctCollation::test_Distinct_with_a_collation": (
        "nx-27017: `distinct` with a case-insensitive collation returns either \"PING\" or "
        "\"ping\" for the two equal values, run to run (it fails plain as well when re-run)."
    ),
}

_OWN_CPU = "the test's own CPU work, no I/O involved: "
STALLS: dict[str, str] = {
    "test/test_bson.py::TestBSON::test_encode_size_limit": (
        _OWN_CPU + "BSON-encodes a 3 GiB document to see it refused (C code holding the GIL)."
    ),
    "test/test_*.py::*::test_numerous_inserts": (
        "inserts maxWriteBatchSize + 100 = 100,100 empty documents: ObjectId generation, "
        "document validation and BSON encoding of each 100,000-document batch run between "
        "two parks; the socket writes themselves park."
    ),
    "test/test_monitor.py::*": (
        _OWN_CPU + "`wait_until(lambda: unregistered(ref))` calls `gc.collect()` in a loop."
    ),
    "test/test_client.py::TestClient::test_continuous_network_errors": (
        _OWN_CPU + "`gc.collect()` and a scan of `gc.get_objects()`."
    ),
    "test/test_typing.py::TestMypyFails::*": _OWN_CPU + "runs mypy in-process (`mypy.api.run`).",
    "test/test_server_selection_in_window.py::*": (
        _OWN_CPU + "simulates thousands of server selections on an in-memory topology."
    ),
    "test/test_compression_support.py::*": _OWN_CPU + "decompresses large payloads.",
    "test/test_bson.py::*": _OWN_CPU + "BSON encoding/decoding.",
    "test/test_raw_bson_shared.py::*": _OWN_CPU + "BSON encoding/decoding.",
    "test/test_custom_types.py::*": _OWN_CPU + "deep recursion in the BSON encoder.",
    "test/test_bulk.py::TestBulk::test_bulk_max_message_size": (
        "BSON-encodes a 48 MB bulk message in C between two parks."
    ),
    "test/test_collection.py::TestCollection::test_insert_many_large_batch": (
        "BSON-encodes a 48 MB batch in C between two parks."
    ),
}


def cause_of(nodeid: str, stall: bool = False) -> str | None:
    table = STALLS if stall else DIFFERENCES
    for pattern, cause in table.items():
        if fnmatch(nodeid, pattern):
            return cause
    return None

"""Green PyMongo next to SQLAlchemy's asyncio layer (aiosqlite), in one FastAPI app.

Both are greenlet bridges. Each request of a concurrent burst interleaves an
SQLAlchemy async insert, a green PyMongo insert and read, an SQLAlchemy async
read, and a green function that ``motorpatch.await_``s an SQLAlchemy query
and then uses PyMongo again. Every request sees exactly its own row and
document, the requests overlap (their PyMongo replies are delayed), and the
green parts run on the loop thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.apps import AppProcess, assert_overlap, burst, serve, slow_proxy

pytest.importorskip("aiosqlite")
pytest.importorskip("sqlalchemy.ext.asyncio")

DELAY = 0.5  # a blocked loop shows as lag >= DELAY; framework CPU on a busy machine stays below
REQUESTS = 30


@pytest.fixture(scope="module")
def app(server_address: tuple[str, int]) -> Iterator[AppProcess]:
    with slow_proxy(server_address, DELAY) as proxy, serve("apps.sqla_app:app", proxy.uri) as app:
        yield app


def test_requests_interleave_sqlalchemy_async_and_green_pymongo(app: AppProcess) -> None:
    run = uuid.uuid4().hex[:8]
    names = [f"{run}-{i}" for i in range(REQUESTS)]
    burst(f"{app.url}/lag")
    bodies = burst([f"{app.url}/mixed?n={n}" for n in names], timeout=60)
    (lag,) = burst(f"{app.url}/lag")
    for name, body in zip(names, bodies, strict=True):
        assert body["mongo"]["doc"] == {"_id": name, "n": name}
        assert body["mongo"]["green"] and body["mongo"]["main_thread"]
        assert body["rows"] == 1 and body["rows_seen_by_green"] == 1
        assert body["final"] == {"_id": name, "n": name, "rows": 1}
    assert_overlap(bodies)
    assert lag["worst_lag"] < DELAY, lag

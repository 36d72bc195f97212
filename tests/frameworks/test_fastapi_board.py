"""The FastAPI example (examples/fastapi_board) under uvicorn, driven over real HTTP.

Every endpoint and its error statuses; the request id set by the middleware
reaches the stored message; the background task counts posts; the export
streams every message; 100 concurrent requests against delayed replies
overlap with the loop's lag measured; a hung database gives 503. The example's
``--check`` CLI runs in tests/scenarios/test_examples.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest

from examples.fastapi_board.app import create_app
from tests.support.web import Http

# proxy and database come before serve_asgi in each test's arguments: the app's lifespan
# closes its client when the server stops, which must happen while the proxy still runs.
pytestmark = [
    pytest.mark.usefixtures("installed"),
    pytest.mark.filterwarnings("error::motorpatch.BlockingCallWarning"),
]


@pytest.fixture
def database(server_uri: str) -> Iterator[str]:
    name = f"board_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(server_uri) as client:
        client.drop_database(name)


async def _authors(http: Http, url: str, expected: int) -> Any:
    """The authors list once the background tasks of ``expected`` posts have run."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # background tasks run after their response was sent: nothing to wait on
        _, authors = await http.get(url + "/api/authors")
        if sum(a["posts"] for a in authors) >= expected:
            return authors
        assert asyncio.get_running_loop().time() < deadline, authors
        await asyncio.sleep(0.02)


def test_every_endpoint(proxy, database, server_uri, serve_asgi, with_http) -> None:
    server = serve_asgi(create_app(proxy.uri, database))

    async def test(http: Http) -> dict[str, Any]:
        url = server.url
        out: dict[str, Any] = {}
        out["empty"] = await http.get(url + "/api/messages")
        out["bad"] = await http.post(url + "/api/messages", {"author": "ann", "text": "  "})
        out["invalid"] = await http.post(url + "/api/messages", {"author": "ann"})
        async with http.session.post(
            url + "/api/messages",
            json={"author": "ann", "text": "first"},
            headers={"x-request-id": "req-1"},
        ) as response:
            out["first"] = response.status, await response.json(), response.headers
        out["second"] = await http.post(url + "/api/messages", {"author": "bo", "text": "hi"})
        out["list"] = await http.get(url + "/api/messages")
        status, body = await http.get(url + "/api/export")
        out["export"] = status, [json.loads(line) for line in body.decode().splitlines()]
        out["authors"] = await _authors(http, url, 2)
        out["health"] = await http.get(url + "/health")
        return out

    out = with_http(test)
    assert out["empty"] == (200, {"messages": []})
    assert out["bad"] == (400, {"detail": "Write a message before posting: the text is empty."})
    assert out["invalid"][0] == 422  # FastAPI's request validation: 'text' is required
    status, first, headers = out["first"]
    assert status == 201 and first["author"] == "ann" and first["text"] == "first"
    assert headers["x-request-id"] == "req-1"
    second = out["second"][1]
    assert out["list"] == (200, {"messages": [second, first]})  # newest first
    assert out["export"] == (200, [first, second])  # oldest first
    assert out["authors"] == [{"author": "ann", "posts": 1}, {"author": "bo", "posts": 1}]
    assert out["health"][0] == 200 and out["health"][1]["ok"] is True
    with pymongo.MongoClient(server_uri) as client:  # the middleware's context var, stored
        stored = client[database]["messages"].find_one({"text": "first"})
    assert stored is not None and stored["request_id"] == "req-1"


def test_concurrent_requests_overlap_on_a_delayed_server(
    proxy, database, serve_asgi, with_http
) -> None:
    app = create_app(proxy.uri, database, maxPoolSize=200, maxConnecting=200)
    server = serve_asgi(app)
    n, delay = 100, 0.5

    async def test(http: Http) -> tuple[float, list[tuple[int, Any]]]:
        await http.post(server.url + "/api/messages", {"author": "ann", "text": "hello"})
        proxy.delay = delay
        return await http.get_many_warm(server, server.url + "/api/messages", n)

    elapsed, results = with_http(test)
    lag = server.lag
    print(
        f"fastapi_board: {n} x {delay * 1000:.0f} ms in {elapsed:.2f}s, "
        f"{lag.summary()}"
    )
    assert all(status == 200 and len(body["messages"]) == 1 for status, body in results)
    # Near one delay; as plain defs in AnyIO's 40 threads: 3 rounds (1.5 s), serially 50 s.
    assert elapsed < 2 * delay, f"{n} requests took {elapsed:.2f}s: they did not overlap"
    # Serving 100 requests that arrive at once is CPU work on the loop (parsing, routing,
    # validation): a few ticks can be late by that. A PyMongo call blocking the loop would
    # stall it for a whole round trip, and most ticks would be late.
    assert lag.percentile(99) < delay / 10, f"loop lag p99 {lag.percentile(99) * 1000:.0f} ms"
    assert lag.max < delay, f"the loop stalled {lag.max * 1000:.0f} ms: a blocking call"


def test_a_hung_database_answers_503(proxy, database, serve_asgi, with_http) -> None:
    server = serve_asgi(create_app(proxy.uri, database, socketTimeoutMS=300))

    async def test(http: Http) -> tuple[Any, Any]:
        proxy.hang()
        try:
            down = await http.get(server.url + "/api/messages")
        finally:
            proxy.resume()
        return down, await http.get(server.url + "/api/messages")

    down, back = with_http(test)
    assert down == (503, {"error": "The database is unavailable."})
    assert back == (200, {"messages": []})

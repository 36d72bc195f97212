"""aiohttp end to end: a real aiohttp server in its own thread, an aiohttp client on another.

Handlers from a ``RouteTableDef``, ``add_routes`` and class-based ``web.View``
methods decorated ``@green`` are taken as coroutine functions (registration
under ``-W error`` semantics: aiohttp's "Bare functions are deprecated" shim
would raise), run as green code on the server's loop thread and overlap.
"""

from __future__ import annotations

import contextvars
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

import motorpatch
from tests.support.web import Http, Where

pytestmark = [
    pytest.mark.usefixtures("installed"),
    pytest.mark.filterwarnings("error::motorpatch.BlockingCallWarning"),
]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def make_app(coll: Any, where: Where) -> web.Application:
    routes = web.RouteTableDef()
    audit = coll.database[coll.name + "_audit"]

    @web.middleware
    async def tag_request(request: web.Request, handler: Any) -> web.StreamResponse:
        request_id.set(request.headers.get("x-request-id", "none"))
        return await handler(request)  # type: ignore[no-any-return]

    @motorpatch.green
    def record(path: str) -> None:
        where.mark("middleware")
        audit.insert_one({"path": path})

    @web.middleware
    async def audit_request(request: web.Request, handler: Any) -> web.StreamResponse:
        await record(request.path)  # a green function awaited from a middleware
        return await handler(request)  # type: ignore[no-any-return]

    @routes.get("/items/{i}")
    @motorpatch.green
    def read_item(request: web.Request) -> web.Response:
        where.mark("handler")
        doc = coll.find_one({"i": int(request.match_info["i"])}, {"_id": 0})
        if doc is None:
            raise web.HTTPNotFound(text="no such item")
        return web.json_response({**doc, "request_id": request_id.get()})

    @routes.view("/count")
    class Count(web.View):
        @motorpatch.green
        def get(self) -> web.Response:
            where.mark("view")
            return web.json_response({"n": coll.count_documents({})})

        @motorpatch.green
        def post(self) -> web.Response:
            where.mark("view")
            coll.insert_one({"i": 1000, "tag": "new"})
            return web.json_response({"n": coll.count_documents({})}, status=201)

    @routes.get("/stream")
    @motorpatch.green
    def stream(request: web.Request) -> web.StreamResponse:
        """A StreamResponse written from green code: the cursor's getMores park."""
        where.mark("stream")
        response = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
        motorpatch.await_(response.prepare(request))
        for doc in coll.find({}, {"_id": 0, "i": 1}).sort("i", 1).batch_size(100):
            motorpatch.await_(response.write(json.dumps(doc).encode() + b"\n"))
        motorpatch.await_(response.write_eof())
        return response

    @routes.get("/stream-async")
    async def stream_async(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        cursor = coll.find({}, {"_id": 0, "i": 1}).sort("i", 1).batch_size(100)
        async for doc in motorpatch.green_iter(cursor):
            await response.write(json.dumps(doc).encode() + b"\n")
        await response.write_eof()
        return response

    app = web.Application(middlewares=[tag_request, audit_request])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Bare functions are deprecated"
        app.add_routes(routes)
    return app


@pytest.fixture
def items(make_client: Any, proxy: Any, coll: Any) -> Iterator[Any]:
    coll.insert_many([{"i": i, "tag": f"tag-{i}"} for i in range(20)])
    client = make_client(proxy.uri, maxPoolSize=200, maxConnecting=200)
    yield client[coll.database.name][coll.name]
    coll.database.drop_collection(coll.name + "_audit")


def test_handlers_and_middleware_run_green_on_the_loop_and_overlap(
    serve_aiohttp, with_http, items, proxy
) -> None:
    where = Where()
    server = serve_aiohttp(make_app(items, where))
    n, delay = 100, 0.5

    async def test(http: Http) -> tuple[float, list[tuple[int, Any]]]:
        proxy.delay = delay
        return await http.get_many_warm(server, server.url + "/items/3", n)

    elapsed, results = with_http(test)
    lag = server.lag
    print(
        f"aiohttp: {n} x 2 x {delay * 1000:.0f} ms in {elapsed:.2f}s "
        f"(serial {n * 2 * delay:.0f}s), "
        f"{lag.summary()}"
    )
    assert results == [(200, {"i": 3, "tag": "tag-3", "request_id": "none"})] * n
    assert where.threads("handler") == {server.thread_id} and where.all_green("handler")
    assert where.threads("middleware") == {server.thread_id} and where.all_green("middleware")
    # Two round trips per request (the middleware's insert, the handler's find): 1 s at
    # best; serially 100 s.
    assert elapsed < 2 * 2 * delay, f"{n} requests took {elapsed:.2f}s: they did not overlap"
    # Serving 100 requests that arrive at once is CPU work on the loop (parsing, routing,
    # validation): a few ticks can be late by that. A PyMongo call blocking the loop would
    # stall it for a whole round trip, and most ticks would be late.
    assert lag.percentile(99) < delay / 10, f"loop lag p99 {lag.percentile(99) * 1000:.0f} ms"
    assert lag.max < delay, f"the loop stalled {lag.max * 1000:.0f} ms: a blocking call"


def test_views_context_and_errors(serve_aiohttp, with_http, items) -> None:
    where = Where()
    server = serve_aiohttp(make_app(items, where))

    async def test(http: Http) -> list[Any]:
        async with http.session.get(
            server.url + "/items/4", headers={"x-request-id": "req-7"}
        ) as response:
            tagged = response.status, await response.json()
        async with http.session.get(server.url + "/items/404") as response:
            missing = response.status, await response.text()
        return [
            tagged,
            missing,
            await http.get(server.url + "/count"),
            await http.post(server.url + "/count", {}),
        ]

    assert with_http(test) == [
        (200, {"i": 4, "tag": "tag-4", "request_id": "req-7"}),
        (404, "no such item"),
        (200, {"n": 20}),
        (201, {"n": 21}),
    ]
    assert where.threads("view") == {server.thread_id} and where.all_green("view")
    assert items.database[items.name + "_audit"].count_documents({}) == 4


def test_stream_responses_from_green_and_async_handlers(
    serve_aiohttp, with_http, make_client, coll
) -> None:
    coll.insert_many([{"i": i, "pad": "x" * 200} for i in range(2000)])
    where = Where()
    server = serve_aiohttp(make_app(make_client()[coll.database.name][coll.name], where))

    async def test(http: Http) -> list[list[int]]:
        bodies = []
        for path in ("/stream", "/stream-async"):
            status, body = await http.get(server.url + path)
            assert status == 200
            bodies.append([json.loads(line)["i"] for line in body.decode().splitlines()])
        return bodies

    assert with_http(test) == [list(range(2000))] * 2
    assert where.threads("stream") == {server.thread_id} and where.all_green("stream")

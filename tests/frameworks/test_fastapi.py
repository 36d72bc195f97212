"""FastAPI end to end: uvicorn on 127.0.0.1, an aiohttp client on another thread's loop.

What each test proves is observable: request bodies, dependencies, background
tasks and exception handlers record the thread they ran on and whether they
were green code; N requests against a server whose replies are delayed finish
in about one delay; the server loop's lag is measured while PyMongo waits.
BlockingCallWarning is an error: PyMongo on the loop outside green code fails.
"""

from __future__ import annotations

import contextvars
import json
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, field_serializer

import motorpatch
from tests.support.loops import run_on
from tests.support.web import Http, Where, in_green_code

pytestmark = [
    pytest.mark.usefixtures("installed"),
    pytest.mark.filterwarnings("error::motorpatch.BlockingCallWarning"),
]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Item(BaseModel):
    i: int
    tag: str

    @field_serializer("tag")
    def _where(self, tag: str) -> str:
        SERIALIZED_ON.add(threading.get_ident())
        return tag


SERIALIZED_ON: set[int] = set()


class Missing(Exception):
    pass


def make_app(coll: Any, where: Where) -> FastAPI:
    """An app as a user writes it: green endpoints, dependencies, tasks and handlers."""
    app = FastAPI()

    @app.middleware("http")
    async def tag_request(request: Request, call_next: Any) -> Any:
        request_id.set(request.headers.get("x-request-id", "none"))
        return await call_next(request)

    @motorpatch.green
    def get_coll() -> Any:  # a sync dependency, green
        where.mark("dependency")
        return coll

    @motorpatch.green
    def session_scope() -> Iterator[Any]:  # a yield dependency: a session around the request
        session = coll.database.client.start_session()
        where.mark("session-open")
        try:
            yield session
        finally:
            session.end_session()
            where.mark("session-close")

    def plain_dependency() -> str:  # no @green: FastAPI's thread pool
        where.mark("plain-dependency", green_check=False)
        return "plain"

    @app.get("/items/{i}", response_model=Item)
    @motorpatch.green
    def read_item(i: int, c: Any = Depends(get_coll)) -> Any:  # noqa: B008
        where.mark("endpoint")
        doc = c.find_one({"i": i}, {"_id": 0, "secret": 0})
        if doc is None:
            raise HTTPException(status_code=404, detail=f"no item {i}")
        return {**doc, "extra": "dropped by the response model"}

    @app.get("/with-session/{i}")
    @motorpatch.green
    def with_session(i: int, session: Any = Depends(session_scope)) -> dict[str, Any]:  # noqa: B008
        where.mark("endpoint")
        doc = coll.find_one({"i": i}, {"_id": 0}, session=session)
        return {"tag": doc["tag"], "session_active": not session.has_ended}

    @app.get("/request-id")
    @motorpatch.green
    def read_request_id(plain: str = Depends(plain_dependency)) -> dict[str, str]:
        where.mark("endpoint")
        return {"request_id": request_id.get(), "plain": plain}

    @motorpatch.green
    def log_visit(who: str) -> None:
        coll.database[coll.name + "_visits"].insert_one({"who": who})
        where.mark("background")

    @app.post("/visits/{who}")
    @motorpatch.green
    def visit(who: str, tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(log_visit, who)
        return {"queued": True}

    @app.exception_handler(Missing)
    @motorpatch.green
    def on_missing(request: Request, exc: Missing) -> JSONResponse:
        where.mark("handler")
        coll.database[coll.name + "_errors"].insert_one({"path": request.url.path})
        return JSONResponse({"missing": str(exc)}, status_code=410)

    @app.get("/gone")
    @motorpatch.green
    def gone() -> None:
        raise Missing("it left")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        cursor = coll.find({}, {"_id": 0, "i": 1}).sort("i", 1).batch_size(100)

        async def lines() -> Any:
            async for doc in motorpatch.green_iter(cursor):
                yield json.dumps(doc) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @motorpatch.green
    def tag_of(i: int) -> str:
        return str(coll.find_one({"i": i})["tag"])

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(await tag_of(int(text)))

    @app.websocket("/ws-green")
    @motorpatch.green
    def ws_green(websocket: WebSocket) -> None:  # a green body drives the socket by await_
        where.mark("ws")
        motorpatch.await_(websocket.accept())
        i = int(motorpatch.await_(websocket.receive_text()))
        motorpatch.await_(websocket.send_text(tag_of(i)))
        motorpatch.await_(websocket.close())

    @app.get("/slow/{i}")
    @motorpatch.green
    def slow(i: int) -> dict[str, str]:
        where.mark("slow")
        return {"tag": tag_of(i)}

    @app.get("/sleepy")
    async def sleepy() -> dict[str, bool]:
        import asyncio

        await asyncio.sleep(0.2)
        return {"ok": True}

    return app


@pytest.fixture
def items(make_client: Any, proxy: Any, coll: Any) -> Iterator[Any]:
    """The test collection with 20 items, seen through the delaying proxy."""
    coll.insert_many([{"i": i, "tag": f"tag-{i}", "secret": "s"} for i in range(20)])
    client = make_client(proxy.uri, maxPoolSize=200, maxConnecting=200)
    yield client[coll.database.name][coll.name]
    for suffix in ("_visits", "_errors"):
        coll.database.drop_collection(coll.name + suffix)


def test_the_client_overlaps_on_a_plain_async_endpoint(serve_asgi, with_http, items) -> None:
    """Measure the client first: 200 requests to an async endpoint that waits 0.2 s."""
    server = serve_asgi(make_app(items, Where()))

    async def test(http: Http) -> float:
        await http.get_many(server.url + "/sleepy", 20)  # warm: connections open
        elapsed, results = await http.get_many(server.url + "/sleepy", 200)
        assert all(status == 200 for status, _ in results)
        return elapsed

    elapsed = with_http(test)
    print(f"client: 200 x 0.2 s async endpoint in {elapsed:.2f}s")
    assert elapsed < 1.0, f"the client itself does not overlap 200 requests ({elapsed:.2f}s)"


def test_endpoint_and_dependency_run_green_on_the_loop_and_overlap(
    serve_asgi, with_http, items, proxy
) -> None:
    where = Where()
    server = serve_asgi(make_app(items, where))
    n, delay = 100, 0.5  # more requests than AnyIO's 40 worker threads

    async def test(http: Http) -> tuple[float, list[tuple[int, Any]]]:
        proxy.delay = delay
        return await http.get_many_warm(server, server.url + "/items/3", n)

    elapsed, results = with_http(test)
    lag = server.lag
    print(
        f"fastapi: {n} x {delay * 1000:.0f} ms in {elapsed:.2f}s "
        f"(serial {n * delay:.0f}s, AnyIO's 40 threads >= {-(-n // 40) * delay:.1f}s), "
        f"{lag.summary()}"
    )
    assert results == [(200, {"i": 3, "tag": "tag-3"})] * n  # the response model filtered
    assert where.threads("endpoint") == {server.thread_id}
    assert where.threads("dependency") == {server.thread_id}
    assert where.all_green("endpoint") and where.all_green("dependency")
    assert {server.thread_id} <= SERIALIZED_ON, "response validation runs on the loop thread"
    # Near one delay; AnyIO's 40 worker threads need 3 rounds (1.5 s), serially 50 s.
    assert elapsed < 2 * delay, f"{n} requests took {elapsed:.2f}s: they did not overlap"
    # Serving 100 requests that arrive at once is CPU work on the loop (parsing, routing,
    # validation): a few ticks can be late by that. A PyMongo call blocking the loop would
    # stall it for a whole round trip, and most ticks would be late.
    assert lag.percentile(99) < delay / 10, f"loop lag p99 {lag.percentile(99) * 1000:.0f} ms"
    assert lag.max < delay, f"the loop stalled {lag.max * 1000:.0f} ms: a blocking call"


def test_yield_dependency_opens_and_closes_its_session_green(serve_asgi, with_http, items):
    where = Where()
    server = serve_asgi(make_app(items, where))

    async def test(http: Http) -> Any:
        return await http.get(server.url + "/with-session/4")

    assert with_http(test) == (200, {"tag": "tag-4", "session_active": True})
    where.wait_for("session-close")  # FastAPI may exit the dependency after responding
    labels = [label for label, _, _ in where.seen]
    assert labels == ["session-open", "endpoint", "session-close"]
    assert {t for _, t, _ in where.seen} == {server.thread_id}
    assert all(green for _, _, green in where.seen)


def test_middleware_context_reaches_the_body_and_plain_dependencies_use_threads(
    serve_asgi, with_http, items
) -> None:
    where = Where()
    server = serve_asgi(make_app(items, where))

    async def test(http: Http) -> Any:
        async with http.session.get(
            server.url + "/request-id", headers={"x-request-id": "req-42"}
        ) as response:
            return response.status, await response.json()

    assert with_http(test) == (200, {"request_id": "req-42", "plain": "plain"})
    assert where.threads("endpoint") == {server.thread_id}
    assert server.thread_id not in where.threads("plain-dependency")  # a worker thread


def test_background_task_and_exception_handler_run_green(serve_asgi, with_http, items):
    where = Where()
    server = serve_asgi(make_app(items, where))

    async def test(http: Http) -> tuple[Any, Any]:
        return await http.post(server.url + "/visits/ann", {}), await http.get(server.url + "/gone")

    visit, gone = with_http(test)
    where.wait_for("background")  # background tasks run after the response
    assert visit == (200, {"queued": True})
    assert gone == (410, {"missing": "it left"})
    assert where.threads("background") == {server.thread_id} and where.all_green("background")
    assert where.threads("handler") == {server.thread_id} and where.all_green("handler")
    assert items.database[items.name + "_visits"].count_documents({"who": "ann"}) == 1
    assert items.database[items.name + "_errors"].count_documents({"path": "/gone"}) == 1


def test_http_exception_from_a_green_endpoint(serve_asgi, with_http, items):
    server = serve_asgi(make_app(items, Where()))

    async def test(http: Http) -> Any:
        return await http.get(server.url + "/items/999")

    assert with_http(test) == (404, {"detail": "no item 999"})


def test_streaming_a_large_cursor_parks_between_batches(serve_asgi, with_http, make_client, coll):
    coll.insert_many([{"i": i, "pad": "x" * 200} for i in range(3000)])
    client = make_client()
    server = serve_asgi(make_app(client[coll.database.name][coll.name], Where()))

    async def test(http: Http) -> list[int]:
        server.reset_lag()
        status, body = await http.get(server.url + "/stream")
        assert status == 200
        return [json.loads(line)["i"] for line in body.decode().splitlines()]

    assert with_http(test) == list(range(3000))
    print(f"stream: 3000 docs, loop lag max {server.lag.max * 1000:.1f} ms")


def test_websocket_endpoints(serve_asgi, with_http, items):
    where = Where()
    server = serve_asgi(make_app(items, where))

    async def test(http: Http) -> tuple[list[str], str]:
        async with http.session.ws_connect(server.url + "/ws") as ws:
            replies = []
            for i in (1, 2, 3):
                await ws.send_str(str(i))
                replies.append(await ws.receive_str())
        async with http.session.ws_connect(server.url + "/ws-green") as ws:
            await ws.send_str("7")
            green_reply = await ws.receive_str()
        return replies, green_reply

    assert with_http(test) == (["tag-1", "tag-2", "tag-3"], "tag-7")
    assert where.threads("ws") == {server.thread_id} and where.all_green("ws")


def test_a_plain_def_endpoint_calling_green_code_warns_once(serve_asgi, with_http, items):
    """The mistake the marker cannot catch: the endpoint itself is not green."""
    app = make_app(items, Where())

    @motorpatch.green
    def count_items() -> int:
        return int(items.count_documents({}))

    @app.get("/count")
    def count() -> dict[str, int]:  # no @green: FastAPI runs it in a worker thread
        return {"n": count_items()}

    server = serve_asgi(app)

    async def test(http: Http) -> list[Any]:
        return [await http.get(server.url + "/count") for _ in range(3)]

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert with_http(test) == [(200, {"n": 20})] * 3
    fallback = [w for w in seen if issubclass(w.category, motorpatch.PlainFallbackWarning)]
    assert len(fallback) == 1
    assert "count_items ran as plain blocking code" in str(fallback[0].message)
    assert "AnyIO worker thread" in str(fallback[0].message)


def test_starlette_routes_views_and_testclient(items):
    """Starlette alone: a Route, an HTTPEndpoint view, and its TestClient (a portal loop)."""
    from starlette.applications import Starlette
    from starlette.endpoints import HTTPEndpoint
    from starlette.requests import Request as SRequest
    from starlette.responses import JSONResponse as SJSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    ran: list[bool] = []

    @motorpatch.green
    def item(request: SRequest) -> SJSONResponse:
        ran.append(in_green_code())
        doc = items.find_one({"i": int(request.path_params["i"])}, {"_id": 0, "secret": 0})
        return SJSONResponse(doc)

    class Count(HTTPEndpoint):
        @motorpatch.green
        def get(self, request: SRequest) -> SJSONResponse:
            ran.append(in_green_code())
            return SJSONResponse({"n": items.count_documents({})})

    app = Starlette(routes=[Route("/items/{i}", item), Route("/count", Count)])
    with TestClient(app) as client:
        assert client.get("/items/5").json() == {"i": 5, "tag": "tag-5"}
        assert client.get("/count").json() == {"n": 20}
    assert ran == [True, True]


def test_green_async_def_is_refused_with_the_fix() -> None:
    app = FastAPI()
    with pytest.raises(TypeError, match=r"already asynchronous \(async def\)"):

        @app.get("/x")
        @motorpatch.green  # type: ignore[arg-type]
        async def x() -> None: ...

    assert run_on("asyncio", _noop) is None


async def _noop() -> None:
    return None

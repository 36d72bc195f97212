"""The FastAPI server for one framework cell: one ``find_one`` per request, under uvicorn.

Run by bench/run.py (``--kind K --port MONGO_PORT``); prints its HTTP port on stdout, serves
until stdin reaches EOF. Every kind answers ``GET /api/messages`` (the path bench/loadgen.py
requests) with the document ``find_one({})`` returns, as JSON; they differ only in how the
endpoint is written:

- ``green``: ``motorpatch.install()``, ``@app.get`` over ``@motorpatch.green def`` on a
  ``MongoClient``: the body runs as green code on uvicorn's loop;
- ``def``: the same ``def`` without motorpatch: FastAPI runs it in AnyIO's thread pool
  (40 threads by default);
- ``pymongo-async``: ``async def`` awaiting PyMongo's ``AsyncMongoClient``;
- ``motor``: ``async def`` awaiting Motor's ``AsyncIOMotorClient``.

uvicorn runs with its defaults (uvloop when installed, h11 or httptools, no access log).
``/_bench/stats`` (process CPU time, RSS) and ``/_bench/lag/start|stop`` (a 1 ms ticker task
on the loop) are plain ``async def`` endpoints, as in bench/worker_http.py.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SMALL, Lags, asyncio_ticker, parse_worker_args, rss_kb, uri

KINDS = ["green", "def", "pymongo-async", "motor"]


def build(kind: str, port: int) -> Any:
    from fastapi import FastAPI

    address = uri(port, 100)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        # The client is made here, in the serving process, as the docs recommend.
        if kind in ("green", "def"):
            import pymongo

            state["client"] = pymongo.MongoClient(address)
        elif kind == "pymongo-async":
            import pymongo

            state["client"] = pymongo.AsyncMongoClient(address)
        else:
            import motor.motor_asyncio

            state["client"] = motor.motor_asyncio.AsyncIOMotorClient(address)
        state["coll"] = state["client"].bench[SMALL]
        yield
        closed = state["client"].close()
        if asyncio.iscoroutine(closed):
            await closed

    app = FastAPI(lifespan=lifespan)

    if kind == "green":
        import motorpatch

        motorpatch.install()

        @app.get("/api/messages")
        @motorpatch.green
        def green_find_one() -> Any:
            return state["coll"].find_one({})

    elif kind == "def":

        @app.get("/api/messages")
        def threaded_find_one() -> Any:
            return state["coll"].find_one({})

    else:

        @app.get("/api/messages")
        async def async_find_one() -> Any:
            return await state["coll"].find_one({})

    lags: dict[str, Any] = {}

    @app.get("/_bench/stats")
    async def stats() -> dict[str, float]:
        return {"cpu": time.process_time(), "rss_mb": round(rss_kb() / 1024, 1),
                "rss_peak_mb": round(rss_kb("VmHWM") / 1024, 1)}  # fmt: skip

    @app.get("/_bench/lag/{action}")
    async def lag(action: str) -> dict[str, Any]:
        if action == "start":
            lags["lags"] = Lags()
            lags["ticker"] = asyncio.ensure_future(asyncio_ticker(lags["lags"]))
            return {}
        if "lags" not in lags:
            return {}
        lags["lags"].running = False
        await lags["ticker"]
        return dict(lags.pop("lags").stats())

    return app


def main() -> None:
    import uvicorn

    args = parse_worker_args(__doc__.splitlines()[0], KINDS)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(build(args.kind, args.port), log_level="warning",
                            access_log=False, backlog=2048)  # fmt: skip
    server = uvicorn.Server(config)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        print(sock.getsockname()[1], flush=True)
        stop = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1() or stop.set())
        await asyncio.wait([task, asyncio.ensure_future(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        loop.remove_reader(sys.stdin.fileno())
        server.should_exit = True
        await task

    try:  # uvloop when installed, as `uvicorn app:app` picks it
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()

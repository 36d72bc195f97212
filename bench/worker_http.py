"""The end-to-end HTTP server for one cell: the demo's ``GET /api/messages`` on Tornado.

Run by bench/run.py (``--kind K --port MONGO_PORT``); prints its HTTP port on stdout, serves
until stdin reaches EOF. Kinds, all answering ``GET /api/messages`` with the same JSON
(the 50 newest messages, examples/messages/app.py's ``to_json``):

- ``mp``: ``motorpatch.install()`` and the demo's own ``make_app(client)``, unchanged
  (its handlers are ``@motorpatch.green`` methods doing plain PyMongo calls);
- ``blocking``: the same handler code without ``@green`` or ``install()``: each PyMongo call
  blocks the IOLoop (what the demo would be without motorpatch);
- ``executor``: the same PyMongo call in the loop's default thread pool via
  ``run_in_executor`` (the usual pre-motorpatch workaround);
- ``pymongo-async``, ``motor``: the equivalent ``async def`` handler on PyMongo's
  ``AsyncMongoClient`` or Motor's ``AsyncIOMotorClient``.

The load generator (bench/loadgen.py) reads the server's own figures through ``/_bench/*``,
served by plain handlers: ``stats`` (process CPU time, RSS), ``lag/start`` and
``lag/stop`` (a 1 ms ticker task on the IOLoop; its p50/p99 lag).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tornado.web
from common import Lags, asyncio_ticker, parse_worker_args, rss_kb, uri

KINDS = ["mp", "blocking", "executor", "pymongo-async", "motor"]


class _State:
    lags: Lags | None = None
    ticker: asyncio.Future[Any] | None = None


class StatsHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"cpu": time.process_time(),
                    "rss_mb": round(rss_kb() / 1024, 1),
                    "rss_peak_mb": round(rss_kb("VmHWM") / 1024, 1)})


class LagHandler(tornado.web.RequestHandler):
    async def get(self, action: str) -> None:
        if action == "start":
            _State.lags = Lags()
            _State.ticker = asyncio.ensure_future(asyncio_ticker(_State.lags))
            self.write({})
            return
        lags, ticker = _State.lags, _State.ticker
        if lags is None or ticker is None:
            self.write({})
            return
        lags.running = False
        await ticker
        self.write(lags.stats())


def build(kind: str, port: int) -> tuple[tornado.web.Application, Any]:
    """The application for ``kind`` and the client it uses."""
    from examples.messages import app as demo

    address = uri(port, 100).replace("/?", "/motorpatch_demo?")
    if kind == "mp":
        import motorpatch

        motorpatch.install()
        import pymongo

        client: Any = pymongo.MongoClient(address)
        application = demo.make_app(client)
    else:
        if kind in ("blocking", "executor"):
            import pymongo

            client = pymongo.MongoClient(address)
            coll: Any = demo.messages_collection(client)

            if kind == "blocking":

                class Handler(demo.BoardHandler):
                    def get(self) -> None:
                        self.write({"messages": [demo.to_json(m) for m in self.recent_messages()]})
            else:

                class Handler(demo.BoardHandler):  # type: ignore[no-redef]
                    async def get(self) -> None:
                        loop = asyncio.get_running_loop()
                        docs = await loop.run_in_executor(None, self.recent_messages)
                        self.write({"messages": [demo.to_json(m) for m in docs]})
        else:
            if kind == "motor":
                import motor.motor_asyncio

                client = motor.motor_asyncio.AsyncIOMotorClient(address)
            elif kind == "pymongo-async":
                import pymongo

                client = pymongo.AsyncMongoClient(address)
            else:
                raise SystemExit(f"unknown kind {kind}")
            coll = client.get_default_database()["messages"]

            class Handler(demo.BoardHandler):  # type: ignore[no-redef]
                async def get(self) -> None:
                    cursor = self.collection.find().sort(demo.NEWEST_FIRST).limit(demo.PAGE_SIZE)
                    docs = await cursor.to_list(None)
                    self.write({"messages": [demo.to_json(m) for m in docs]})

        application = tornado.web.Application(
            [tornado.web.url(r"/api/messages", Handler, {"collection": coll})]
        )
    application.add_handlers(r".*", [
        (r"/_bench/stats", StatsHandler),
        (r"/_bench/lag/(start|stop)", LagHandler),
    ])
    return application, client


async def serve(args: argparse.Namespace) -> None:
    application, client = build(args.kind, args.port)
    server = application.listen(0, address="127.0.0.1", xheaders=False)
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1() or stop.set())
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    server.stop()
    if args.kind == "mp":
        import motorpatch

        await motorpatch.green(client.close)()
    elif args.kind == "blocking":
        client.close()
    elif args.kind == "executor":
        await loop.run_in_executor(None, client.close)
    else:
        result = client.close()
        if asyncio.iscoroutine(result):
            await result


def main() -> None:
    asyncio.run(serve(parse_worker_args(__doc__.splitlines()[0], KINDS)))


if __name__ == "__main__":
    main()

"""A pre-forking Tornado app with green handlers, run as a script by ``test_fork.py``.

    python fork_app.py MONGODB_URI DB.COLLECTION [--prefork]

The parent calls ``motorpatch.install()``, binds a shared listening socket
and ``tornado.process.fork_processes(2)``; each child creates its own
``MongoClient``, listens on the shared socket and on a port of its own, and
serves ``@motorpatch.green`` handlers:

- ``GET /find``: ``find_one`` on the collection; answers the child's pid and
  task id and the loop-clock times the handler started and finished;
- ``GET /prefork`` (with ``--prefork``): the same on a client the parent
  created *and used* before forking, with the warnings it raised;
- ``GET /stop``: the child stops serving and exits 0; once both have, the
  parent exits 0 too (Tornado's ``fork_processes`` does that).

Each child prints ``READY <task id> <pid> <port>`` once it serves.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
import warnings
from typing import Any

import pymongo
import tornado.httpserver
import tornado.netutil
import tornado.process
import tornado.web

import motorpatch


def say(line: str) -> None:
    """One line to stdout in one write: the children share the pipe (and print()
    may write the text and its newline separately, e.g. under PYTHONUNBUFFERED)."""
    os.write(1, f"{line}\n".encode())


def main() -> None:
    uri, namespace = sys.argv[1], sys.argv[2]
    motorpatch.install()
    shared = tornado.netutil.bind_sockets(0, "127.0.0.1")
    say(f"SHARED {shared[0].getsockname()[1]}")
    early = None
    if "--prefork" in sys.argv:
        early = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
        early.get_database("admin").command("ping")  # used before the fork
    task_id = tornado.process.fork_processes(2, max_restarts=0)
    faulthandler.dump_traceback_later(15)  # a child stuck starting up shows where
    asyncio.run(serve(uri, namespace, task_id, shared, early))


async def serve(uri: str, namespace: str, task_id: int, shared: Any, early: Any) -> None:
    client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
    db_name, coll_name = namespace.split(".", 1)
    coll = client[db_name][coll_name]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def answer(handler: tornado.web.RequestHandler, started: float, doc: Any, **extra: Any) -> None:
        handler.write(
            {"pid": os.getpid(), "task": task_id, "start": started, "end": loop.time(),
             "doc": doc, **extra}
        )  # fmt: skip

    class Find(tornado.web.RequestHandler):
        @motorpatch.green
        def get(self) -> None:
            started = loop.time()
            answer(self, started, coll.find_one({}, {"_id": 0}))

    class PreFork(tornado.web.RequestHandler):
        @motorpatch.green
        def get(self) -> None:
            started = loop.time()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                doc = early[db_name][coll_name].find_one({}, {"_id": 0})
            answer(self, started, doc, warnings=[
                [w.category.__name__, str(w.message)] for w in caught
            ])  # fmt: skip

    class Stop(tornado.web.RequestHandler):
        async def get(self) -> None:
            await self.finish({"pid": os.getpid()})  # written out before we stop
            stop.set()

    app = tornado.web.Application([("/find", Find), ("/prefork", PreFork), ("/stop", Stop)])
    own = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(shared + own)
    say(f"READY {task_id} {os.getpid()} {own[0].getsockname()[1]}")
    faulthandler.cancel_dump_traceback_later()
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    await motorpatch.green(client.close)()


if __name__ == "__main__":
    main()

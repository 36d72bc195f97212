"""Run the blog API: ``python -m examples.mongoengine_app [--port N] [--mongodb-uri U] [--check]``.

Without a MongoDB URI (``--mongodb-uri`` or ``MONGODB_URI``) an embedded
nx-27017 with an in-memory database is started for the run and stopped on
exit (the message board's :mod:`examples.messages.embedded`). ``--check``
starts everything, sends one round of requests to itself over HTTP, prints
``check ok`` and exits: a smoke test of the whole stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence

import tornado.httpserver
import tornado.netutil
import tornado.web
from pymongo.errors import PyMongoError
from tornado.httpclient import AsyncHTTPClient

import motorpatch
from examples import _cli
from examples.mongoengine_app.app import disconnect, ensure_indexes, make_app

__all__ = ["main"]


async def _self_check(base: str) -> None:
    """Create an author and a post, like it, list and aggregate: every call must succeed."""
    http = AsyncHTTPClient(force_instance=True)

    async def call(path: str, method: str = "GET", body: object = None) -> dict[str, object]:
        payload = None if body is None else json.dumps(body)
        response = await http.fetch(base + path, method=method, body=payload)
        return json.loads(response.body) if response.body else {}

    try:
        author = await call("/authors", "POST", {"name": "check", "city": "Lyon"})
        new_post = {"author_id": author["id"], "title": "hi", "tags": ["a"]}
        post = await call("/posts", "POST", new_post)
        await call(f"/posts/{post['id']}/like", "POST", {})
        listed = await call("/posts?tag=a")
        tags = await call("/tags")
        assert [p["likes"] for p in listed["posts"]] == [1], listed  # type: ignore[index,attr-defined]
        assert tags == {"tags": [{"tag": "a", "posts": 1, "likes": 1}]}, tags
    finally:
        http.close()


async def _serve(app: tornado.web.Application, host: str, port: int, check: bool) -> None:
    sockets = tornado.netutil.bind_sockets(port, host)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    base = f"http://{host}:{sockets[0].getsockname()[1]}"
    try:
        if check:
            await _self_check(base)
            print("check ok", flush=True)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        print(f"Blog API running at {base}/posts (Ctrl-C to stop)", flush=True)
        await stop.wait()
    finally:
        server.stop()
        await server.close_all_connections()


def main(argv: Sequence[str] | None = None) -> int:
    args = _cli.parser(
        "python -m examples.mongoengine_app",
        "A blog API: Tornado + unchanged MongoEngine models, made green by motorpatch.",
        port=8889,
        check="serve one round of requests to itself, then exit",
    ).parse_args(argv)
    motorpatch.install()  # first, before any PyMongo client exists

    def run(uri: str, cleanup: contextlib.ExitStack[bool | None]) -> None:
        app = make_app(uri, client_options={"serverSelectionTimeoutMS": 10_000})
        cleanup.callback(disconnect)
        ensure_indexes()  # start-up code: plain PyMongo (via MongoEngine) before the loop
        asyncio.run(_serve(app, args.host, args.port, args.check))

    return _cli.run_with_mongodb(args.mongodb_uri, run, errors=(PyMongoError,))


if __name__ == "__main__":
    sys.exit(main())

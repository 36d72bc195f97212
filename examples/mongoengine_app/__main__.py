"""Run the blog API: ``python -m examples.mongoengine_app [--port N] [--mongodb-uri U] [--check]``.

Without a MongoDB URI (``--mongodb-uri`` or ``MONGODB_URI``) an embedded
nx-27017 with an in-memory database is started for the run and stopped on
exit (the message board's :mod:`examples.messages.embedded`). ``--check``
starts everything, sends one round of requests to itself over HTTP, prints
``check ok`` and exits: a smoke test of the whole stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence

import tornado.httpserver
import tornado.netutil
import tornado.web
from pymongo.errors import PyMongoError
from tornado.httpclient import AsyncHTTPClient

import motorpatch
from examples.messages.__main__ import mask_uri
from examples.messages.embedded import EmbeddedMongo, EmbeddedMongoError
from examples.mongoengine_app.app import disconnect, ensure_indexes, make_app

__all__ = ["main"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.mongoengine_app",
        description="A blog API: Tornado + unchanged MongoEngine models, made green by motorpatch.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    parser.add_argument("--port", type=int, default=8889, help="port; 0 picks a free one [8889]")
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("MONGODB_URI") or None,
        help="MongoDB connection string [$MONGODB_URI; when unset, an embedded nx-27017]",
    )
    parser.add_argument(
        "--check", action="store_true", help="serve one round of requests to itself, then exit"
    )
    return parser.parse_args(argv)


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
    args = _parse_args(argv)
    motorpatch.install()  # first, before any PyMongo client exists
    uri = args.mongodb_uri
    try:
        with contextlib.ExitStack() as cleanup:
            if uri is None:
                embedded = cleanup.enter_context(EmbeddedMongo())
                uri = embedded.uri
                print(f"Started embedded nx-27017 (pid {embedded.pid}) at {uri}", flush=True)
            app = make_app(uri, client_options={"serverSelectionTimeoutMS": 10_000})
            cleanup.callback(disconnect)
            ensure_indexes()  # start-up code: plain PyMongo (via MongoEngine) before the loop
            asyncio.run(_serve(app, args.host, args.port, args.check))
    except EmbeddedMongoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PyMongoError as exc:
        print(f"error: cannot use MongoDB at {mask_uri(uri or '')}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the message board: ``python -m examples.messages [--host H] [--port N] [--mongodb-uri URI]``.

Without a MongoDB URI (``--mongodb-uri`` or ``MONGODB_URI``) an embedded
nx-27017 with an in-memory database is started for the run and stopped on
exit, including on Ctrl-C and SIGTERM. ``--port 0`` picks a free port; the
URL printed on start-up shows the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from pymongo import MongoClient
from pymongo.errors import ConfigurationError, PyMongoError

import motorpatch
from examples import _cli
from examples._cli import mask_uri
from examples.messages.app import ensure_indexes, make_app, messages_collection

__all__ = ["main"]


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally``/``with`` clean-up runs (outside the loop)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _connect(uri: str) -> MongoClient[dict[str, Any]]:
    kwargs: dict[str, Any] = {"appname": "motorpatch-messages-demo"}
    if "serverselectiontimeoutms" not in uri.lower():
        kwargs["serverSelectionTimeoutMS"] = 10_000  # fail fast at start-up on a wrong URI
    try:
        return MongoClient(uri, **kwargs)
    except (ConfigurationError, ValueError):
        # PyMongo's message can quote parts of the URI, password included: print neither.
        raise SystemExit(
            "error: the MongoDB URI is invalid. Check its syntax, and that the user name "
            "and password are percent-encoded (urllib.parse.quote_plus)."
        ) from None


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def _serve(app: tornado.web.Application, host: str, port: int, database: str) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then close the server and its connections."""
    try:
        sockets = tornado.netutil.bind_sockets(port, host)
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still interrupts
            loop.add_signal_handler(sig, stop.set)
    actual_port = sockets[0].getsockname()[1]
    print(f"Message board running at {_url(host, actual_port)} (MongoDB: {database})", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        await stop.wait()
    finally:
        print("Shutting down...", flush=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)  # a second Ctrl-C now interrupts at once
        _exit_on_sigterm()
        server.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), 5)


def main(argv: Sequence[str] | None = None) -> int:
    args = _cli.parser(
        "python -m examples.messages",
        "The motorpatch message board demo: Tornado + plain PyMongo.",
        port=8888,
    ).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    motorpatch.install()  # first, before any PyMongo client exists
    _exit_on_sigterm()

    def run(uri: str, cleanup: contextlib.ExitStack[bool | None]) -> None:
        where = mask_uri(uri) if args.mongodb_uri else f"embedded nx-27017 at {uri}, in memory"
        client = _connect(uri)
        cleanup.callback(client.close)
        # Start-up code: plain PyMongo before the loop runs. It simply blocks, as
        # it would without motorpatch; the connection it opens is reused by
        # green handlers later.
        collection = messages_collection(client)
        ensure_indexes(collection)
        where += f", database {collection.database.name!r}"
        asyncio.run(_serve(make_app(client), args.host, args.port, where))

    code = _cli.run_with_mongodb(args.mongodb_uri, run, errors=(PyMongoError,))
    if code == 0:
        print("Stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

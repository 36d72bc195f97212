"""Run the message board: ``python -m examples.messages [--host H] [--port N] [--mongodb-uri URI]``.

Without a MongoDB URI (``--mongodb-uri`` or ``MONGODB_URI``) an embedded
nx-27017 with an in-memory database is started for the run and stopped on
exit, including on Ctrl-C and SIGTERM. ``--port 0`` picks a free port; the
URL printed on start-up shows the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
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
from examples.messages.app import ensure_indexes, make_app, messages_collection
from examples.messages.embedded import EmbeddedMongo, EmbeddedMongoError

__all__ = ["main", "mask_uri"]

# URI options whose values are secrets (TLS key password, AWS session token...).
_SECRET_OPTION = re.compile(r"password|secret|token|authmechanismproperties", re.IGNORECASE)


def mask_uri(uri: str) -> str:
    """``uri`` with the password and secret option values replaced by ``***``.

    Everything before the last ``@`` ahead of the options is user
    information, even where PyMongo would read part of it as a host (a
    password with an unescaped ``/``): better to hide too much than to print
    half a password.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "***" if "@" in uri else uri
    hosts_and_db, question, options = rest.partition("?")
    if "@" in hosts_and_db:
        userinfo, _, hosts_and_db = hosts_and_db.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        hosts_and_db = f"{user}:***@{hosts_and_db}" if colon else f"{userinfo}@{hosts_and_db}"
    masked_options = []
    for option in re.split("[&;]", options) if options else []:
        key, equals, _ = option.partition("=")
        masked_options.append(f"{key}=***" if equals and _SECRET_OPTION.search(key) else option)
    return f"{scheme}://{hosts_and_db}{question}{'&'.join(masked_options)}"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.messages",
        description="The motorpatch message board demo: Tornado + plain PyMongo.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    parser.add_argument(
        "--port", type=int, default=8888, help="port to listen on; 0 picks a free one [8888]"
    )
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("MONGODB_URI") or None,
        help="MongoDB connection string [$MONGODB_URI; when unset, an embedded in-memory nx-27017]",
    )
    return parser.parse_args(argv)


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
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    motorpatch.install()  # first, before any PyMongo client exists
    _exit_on_sigterm()
    uri = args.mongodb_uri or "the embedded server"
    try:
        with contextlib.ExitStack() as cleanup:
            if args.mongodb_uri:
                uri = args.mongodb_uri
                where = mask_uri(uri)
            else:
                embedded = cleanup.enter_context(EmbeddedMongo())
                uri = embedded.uri
                where = f"embedded nx-27017 at {uri}, in memory"
                print(f"Started embedded nx-27017 (pid {embedded.pid}) at {uri}", flush=True)
            client = _connect(uri)
            cleanup.callback(client.close)
            # Start-up code: plain PyMongo before the loop runs. It simply blocks, as
            # it would without motorpatch; the connection it opens is reused by
            # green handlers later.
            collection = messages_collection(client)
            ensure_indexes(collection)
            where += f", database {collection.database.name!r}"
            asyncio.run(_serve(make_app(client), args.host, args.port, where))
    except EmbeddedMongoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PyMongoError as exc:
        print(f"error: cannot use MongoDB at {mask_uri(uri)}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C during start-up
        return 130
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

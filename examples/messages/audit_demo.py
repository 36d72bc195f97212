"""The message board under the audit, with one handler deliberately left unconverted.

``python -m examples.messages.audit_demo REPORT.json [--requests N] [--stall-ms MS] [--converted]``

Serves the board (an embedded nx-27017 unless ``MONGODB_URI`` is set) on a free
loopback port with ``motorpatch.install(audit=REPORT.json)``, but with the JSON
list, ``GET /api/messages``, as it was before its ``@motorpatch.green``: its
PyMongo calls block the loop. A client on the same loop then posts and reads
messages, both pages and API, ``--requests`` of each; the report is written at
the end (``python -m motorpatch.audit REPORT.json`` shows it). ``--converted``
serves the board as shipped, every handler green: the re-run after the fix.
docs/audit.md walks through the reports this produces.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import tornado.httpclient
import tornado.httpserver
from pymongo import MongoClient

import motorpatch
import motorpatch.audit
from examples.messages.app import ApiMessagesHandler, make_app, messages_collection
from examples.messages.embedded import EmbeddedMongo, free_port

__all__ = ["UnconvertedApiMessagesHandler", "main"]


class UnconvertedApiMessagesHandler(ApiMessagesHandler):
    """``GET /api/messages`` without ``@motorpatch.green``: the step not yet migrated."""

    get = ApiMessagesHandler.get.__wrapped__  # type: ignore[attr-defined]


async def _traffic(port: int, requests: int, concurrency: int = 10) -> dict[str, int]:
    http = tornado.httpclient.AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}"
    seen: dict[str, int] = {}

    async def one(method: str, path: str, body: dict[str, str] | None = None) -> None:
        response = await http.fetch(
            base + path,
            method=method,
            body=json.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json"} if body is not None else None,
        )
        key = f"{method} {path} {response.code}"
        seen[key] = seen.get(key, 0) + 1

    for start in range(0, requests, concurrency):
        batch = range(start, min(start + concurrency, requests))
        await asyncio.gather(
            *(one("POST", "/api/messages", {"author": "ann", "text": f"note {i}"}) for i in batch),
        )
        await asyncio.gather(*(one("GET", "/api/messages") for _ in batch))
        await asyncio.gather(*(one("GET", "/") for _ in batch))
    http.close()
    return seen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.messages.audit_demo")
    parser.add_argument("report", help="where the audit writes its JSON report")
    parser.add_argument("--requests", type=int, default=50, help="requests of each kind [50]")
    parser.add_argument("--stall-ms", type=float, default=20.0, help="stall threshold [20]")
    parser.add_argument(
        "--converted", action="store_true", help="serve the board as shipped: every handler green"
    )
    args = parser.parse_args(argv)
    motorpatch.install(audit=args.report, audit_stall_ms=args.stall_ms)
    with contextlib.ExitStack() as cleanup:
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            uri = cleanup.enter_context(EmbeddedMongo()).uri
        client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
        cleanup.callback(client.close)
        database = f"motorpatch_audit_demo_{os.getpid()}"
        cleanup.callback(client.drop_database, database)
        client.admin.command("ping")  # start-up code: no loop runs yet, nothing is recorded

        async def serve() -> dict[str, int]:
            app = make_app(client, database=database)
            board = {"collection": messages_collection(client, database)}
            if not args.converted:
                app.add_handlers(
                    r".*", [(r"/api/messages", UnconvertedApiMessagesHandler, board)]
                )
            port = free_port()
            server = tornado.httpserver.HTTPServer(app)
            server.listen(port, "127.0.0.1")
            try:
                return await _traffic(port, args.requests)
            finally:
                server.stop()

        with warnings.catch_warnings():  # the audit is the report here, not the warning
            warnings.simplefilter("ignore", motorpatch.BlockingCallWarning)
            seen = asyncio.run(serve())
    path = motorpatch.audit.write_report()
    print(", ".join(f"{n} x {k}" for k, n in sorted(seen.items())))
    print(f"audit report: {path}; read it with: python -m motorpatch.audit {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the board: ``python -m examples.fastapi_board [--port N] [--mongodb-uri U] [--check]``.

``motorpatch.install()`` runs first, then uvicorn serves the app. Without a
MongoDB URI (``--mongodb-uri`` or ``MONGODB_URI``) an embedded nx-27017 with an
in-memory database is started for the run and stopped on exit. ``--check``
starts everything, sends one round of requests to itself over HTTP, prints
``check ok`` and exits: a smoke test of the whole stack. In production run it
with uvicorn itself (``uvicorn --factory``, see the README), one client per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import Sequence

import aiohttp
import uvicorn

import motorpatch
from examples import _cli
from examples.fastapi_board.app import create_app

__all__ = ["main"]


async def _self_check(base: str) -> None:
    """Post, list, export, count authors and check health: every call must succeed."""
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/api/messages", json={"author": "check", "text": "hi"}) as r:
            assert r.status == 201, await r.text()
            posted = await r.json()
        async with http.get("/api/messages") as r:
            listed = await r.json()
        assert [m["id"] for m in listed["messages"]] == [posted["id"]], listed
        async with http.get("/api/export") as r:
            exported = [json.loads(line) for line in (await r.text()).splitlines()]
        assert exported == [posted], exported
        async with http.get("/health") as r:
            assert (await r.json())["ok"] is True
        deadline = asyncio.get_running_loop().time() + 5
        while True:  # the post's background task runs after its response was sent
            async with http.get("/api/authors") as r:
                authors = await r.json()
            if authors or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert authors == [{"author": "check", "posts": 1}], authors


class _Server(uvicorn.Server):
    """uvicorn's server, with an event set once it listens (uvicorn itself sets a flag)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


async def _serve(uri: str, host: str, port: int, check: bool) -> None:
    app = create_app(uri, serverSelectionTimeoutMS=10_000)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    base = f"http://{host}:{sock.getsockname()[1]}"
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    listening = asyncio.ensure_future(server.listening.wait())
    try:
        await asyncio.wait([serving, listening], return_when=asyncio.FIRST_COMPLETED)
        if serving.done():  # start-up failed (or the app refused to start): its error
            serving.result()
            return
        if check:
            await _self_check(base)
            print("check ok", flush=True)
            server.should_exit = True
        else:
            print(f"Message board API running at {base}/api/messages (docs: {base}/docs)")
        await serving
    finally:
        listening.cancel()
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await serving
        sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _cli.parser(
        "python -m examples.fastapi_board",
        "The message board as a FastAPI service, sync PyMongo made green.",
        port=8890,
        check="serve one round of requests to itself, then exit",
    ).parse_args(argv)
    motorpatch.install()  # first, before any PyMongo client exists
    return _cli.run_with_mongodb(
        args.mongodb_uri,
        lambda uri, _: asyncio.run(_serve(uri, args.host, args.port, args.check)),
        errors=(OSError, RuntimeError),
        doing="serve or use MongoDB",
    )


if __name__ == "__main__":
    sys.exit(main())

"""Run the aiohttp board: ``python -m examples.aiohttp_board [--port N] [--check]``.

Without a MongoDB URI (``--mongodb-uri`` or ``MONGODB_URI``) an embedded
nx-27017 is started for the run. ``--check`` serves one round of requests to
itself, prints ``check ok`` and exits.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import aiohttp
from aiohttp import web

import motorpatch
from examples import _cli
from examples.aiohttp_board.app import make_app

__all__ = ["main"]


async def _self_check(base: str) -> None:
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/api/messages", json={"author": "check", "text": "hi"}) as r:
            assert r.status == 201, await r.text()
            posted = await r.json()
        async with http.get("/api/messages") as r:
            assert (await r.json())["messages"] == [posted]
        async with http.delete(f"/api/messages/{posted['id']}") as r:
            assert r.status == 200, await r.text()


async def _serve(uri: str, host: str, port: int, check: bool) -> None:
    runner = web.AppRunner(make_app(uri, serverSelectionTimeoutMS=10_000))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        base = f"http://{host}:{bound}"
        if check:
            await _self_check(base)
            print("check ok", flush=True)
            return
        print(f"Message board API running at {base}/api/messages (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = _cli.parser(
        "python -m examples.aiohttp_board",
        "The message board as an aiohttp service, sync PyMongo made green.",
        port=8891,
        check="serve one round to itself, exit",
    ).parse_args(argv)
    motorpatch.install()  # first, before any PyMongo client exists
    return _cli.run_with_mongodb(
        args.mongodb_uri, lambda uri, _: asyncio.run(_serve(uri, args.host, args.port, args.check))
    )


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures for the framework tests: real servers on 127.0.0.1, a real client.

- ``serve_asgi(app)``: the app under uvicorn in a thread of its own, stopped after;
  ``serve_aiohttp(app)`` the same for an aiohttp application.
- ``with_http(test)``: runs ``test(http)`` with an aiohttp client on a fresh loop in
  the test's thread (another loop and thread than the server's).

The servers and the client are in tests/support/web.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.support.loops import run_on
from tests.support.web import AiohttpServer, AsgiServer, Http

T = TypeVar("T")
S = TypeVar("S", AsgiServer, AiohttpServer)


def _serving(kind: Callable[[Any], S]) -> Iterator[Callable[[Any], S]]:
    """A fixture's body: ``serve(app)`` starts a ``kind`` server; all are stopped after."""
    servers: list[S] = []

    def serve(app: Any) -> S:
        server = kind(app).start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture
def serve_asgi() -> Iterator[Callable[[Any], AsgiServer]]:
    yield from _serving(AsgiServer)


@pytest.fixture
def serve_aiohttp() -> Iterator[Callable[[Any], AiohttpServer]]:
    yield from _serving(AiohttpServer)


@pytest.fixture
def with_http() -> Callable[[Callable[[Http], Awaitable[T]]], T]:
    """``with_http(test)``: run ``test(http)`` on a fresh asyncio loop in this thread."""

    def run(test: Callable[[Http], Awaitable[T]]) -> T:
        async def main() -> T:
            connector = aiohttp.TCPConnector(limit=0)  # no client-side cap on connections
            async with aiohttp.ClientSession(connector=connector) as session:
                return await test(Http(session))

        return run_on("asyncio", main)

    return run

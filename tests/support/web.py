"""Web servers and a client for the framework tests, all on 127.0.0.1.

- ``AsgiServer(app)``: the app under uvicorn in a thread of its own (its own
  asyncio loop, a loop-lag ticker on it), on a free loopback port;
  ``AiohttpServer(app)`` the same for an aiohttp ``web.Application``.
- ``Http``: an aiohttp client on the test's own loop (another thread than the
  server's); ``get_many(url, n)`` sends ``n`` concurrent GETs and times them
  (``get_many_warm`` after a warm-up round that opens the connections).
- ``Where``: records on which thread code ran and whether it was green code.
- ``tornado_served(app)``: a Tornado app on the running loop (the test's own),
  with a Tornado HTTP client, for the examples' scenario tests.

The client was measured first (tests/frameworks/test_fastapi.py::
test_the_client_overlaps_on_a_plain_async_endpoint): it must overlap requests
itself before an overlap says anything about the server.
"""

from __future__ import annotations

import asyncio
import faulthandler
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
import tornado.httpserver
import tornado.netutil
import tornado.web
import uvicorn
from tornado.httpclient import AsyncHTTPClient

import motorpatch
from tests.support.loops import LagTicker

__all__ = ["AiohttpServer", "AsgiServer", "Http", "Where", "in_green_code", "tornado_served"]


def in_green_code() -> bool:
    """True inside green code: only there can ``await_`` wait for something on the loop."""
    try:
        motorpatch.await_(asyncio.sleep(0))
    except motorpatch.GreenContextError:
        return False
    return True


@dataclass
class Where:
    """Where pieces of code ran: (label, thread id, green?) in call order."""

    seen: list[tuple[str, int, bool]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def mark(self, label: str, *, green_check: bool = True) -> None:
        green = in_green_code() if green_check else False
        with self.changed:
            self.seen.append((label, threading.get_ident(), green))
            self.changed.notify_all()

    def wait_for(self, label: str, timeout: float = 10.0) -> None:
        """Wait until ``label`` was marked (work a framework finishes after the response)."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.threads(label), timeout):
                raise AssertionError(f"{label!r} never ran (seen: {self.seen})")

    def threads(self, label: str) -> set[int]:
        return {t for name, t, _ in self.seen if name == label}

    def all_green(self, label: str) -> bool:
        entries = [g for name, _, g in self.seen if name == label]
        return bool(entries) and all(entries)


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, telling another thread when it listens (it only sets a flag)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


class _ThreadServer:
    """A web server in a thread with its own asyncio loop, on a free 127.0.0.1 port.

    A subclass serves ``self.app`` on ``self.sock`` in ``_serve()`` (the lag ticker on),
    and sets ``self.listening`` once it accepts connections.
    """

    kind = "server"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread_id = 0
        self.lag = LagTicker()
        self.listening = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-test", daemon=True)

    async def _serve(self) -> None:
        raise NotImplementedError

    def _started(self) -> bool:
        return True

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.thread_id = threading.get_ident()
            await self._serve()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start() or stop()
            self._failed = exc
        finally:
            self.listening.set()  # a failed start must not leave start() waiting

    def start(self) -> Self:
        self._thread.start()
        if not self.listening.wait(30) or self._failed or not self._started():
            raise RuntimeError(f"{self.kind} did not start: {self._failed!r}")
        return self

    def reset_lag(self) -> LagTicker:
        """A fresh lag record from now on (the ticker keeps running on the server loop)."""
        self.lag.lags.clear()
        return self.lag

    def _shut_down(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._shut_down()
        self._thread.join(30)
        self.sock.close()
        if self._thread.is_alive():  # say where it hangs
            faulthandler.dump_traceback(sys.stderr, all_threads=True)
            print(asyncio.all_tasks(self.loop) if self.loop else None, file=sys.stderr)
        assert not self._thread.is_alive(), f"{self.kind} did not stop"
        if self._failed:
            raise self._failed


class AsgiServer(_ThreadServer):
    """uvicorn serving ``app`` in a thread with its own asyncio loop, on 127.0.0.1."""

    kind = "uvicorn"

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.server = _Uvicorn(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.server.listening = self.listening

    async def _serve(self) -> None:
        with self.lag:
            await self.server.serve(sockets=[self.sock])

    def _started(self) -> bool:
        return bool(self.server.started)

    def _shut_down(self) -> None:
        self.server.should_exit = True


class Http:
    """An aiohttp client session for one test coroutine (on the test's loop)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def get(self, url: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.get(url, **kwargs) as response:
            body = await response.read()
            kind = response.headers.get("content-type", "")
            value = await response.json() if kind.startswith("application/json") else body
            return response.status, value

    async def post(self, url: str, payload: Any) -> tuple[int, Any]:
        async with self.session.post(url, json=payload) as response:
            return response.status, await response.json()

    async def get_many(self, url: str, n: int) -> tuple[float, list[tuple[int, Any]]]:
        """``n`` concurrent GETs of ``url``: (seconds, [(status, body)...])."""
        start = time.perf_counter()
        results = await asyncio.gather(*[self.get(url) for _ in range(n)])
        return time.perf_counter() - start, list(results)

    async def get_many_warm(
        self, server: _ThreadServer, url: str, n: int
    ) -> tuple[float, list[tuple[int, Any]]]:
        """``get_many(url, n)`` after a first round that opens ``n`` connections; the
        server's lag record starts afresh between the two rounds."""
        await self.get_many(url, n)
        server.reset_lag()
        return await self.get_many(url, n)


class AiohttpServer(_ThreadServer):
    """An aiohttp ``web.Application`` served in a thread with its own asyncio loop."""

    kind = "aiohttp"

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._stop: asyncio.Event | None = None

    async def _serve(self) -> None:
        from aiohttp import web

        self._stop = asyncio.Event()
        runner = web.AppRunner(self.app)
        await runner.setup()
        try:
            await web.SockSite(runner, self.sock).start()
            self.listening.set()
            with self.lag:
                await self._stop.wait()
        finally:
            await runner.cleanup()

    def _shut_down(self) -> None:
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)


@asynccontextmanager
async def tornado_served(
    app: tornado.web.Application,
) -> AsyncIterator[tuple[str, AsyncHTTPClient]]:
    """Serve ``app`` on a free 127.0.0.1 port on the running loop: (base URL, an HTTP
    client of 64 connections); the client, the server and its connections close after."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    http = AsyncHTTPClient(force_instance=True, max_clients=64)
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}", http
    finally:
        http.close()
        server.stop()
        await server.close_all_connections()

"""A loopback TCP fault proxy (asyncio, in its own thread) between a client and a server.

- ``delay``: every byte from the server reaches the client ``delay`` seconds
  after it arrived (chunks keep their order; connections are independent).
- ``hang()`` / ``resume()``: withhold everything from the server until resumed.
- ``requests``: a counter of client->server chunks, with ``wait_requests(n)``
  to synchronise on "the request has reached the server" without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.delay = 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._ready = threading.Event()
        self._cond = threading.Condition()
        self.requests = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    # -- control, from any thread ---------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def hang(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def wait_requests(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` client->server chunks have been forwarded."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.requests >= n, timeout):
                raise TimeoutError(f"proxy saw {self.requests} requests, waited for {n}")

    def stop(self) -> None:
        async def _close() -> None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- the proxy, on its own loop -----------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            cwriter.close()
            return
        self._writers |= {cwriter, swriter}
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        tasks = [
            asyncio.ensure_future(self._upstream(creader, swriter)),
            asyncio.ensure_future(self._read_replies(sreader, queue)),
            asyncio.ensure_future(self._deliver(queue, cwriter)),
        ]
        with contextlib.suppress(asyncio.CancelledError):  # stopping: close quietly
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (cwriter, swriter):
            w.close()
            self._writers.discard(w)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            with self._cond:
                self.requests += 1
                self._cond.notify_all()

    async def _read_replies(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]
    ) -> None:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + self.delay, data))
        queue.put_nowait((0.0, b""))

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        while True:
            due, data = await queue.get()
            if not data:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._flowing.wait()
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

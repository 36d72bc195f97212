"""A loopback TCP fault proxy (asyncio, in its own thread) between a client and a server.

- ``delay``: every byte from the server reaches the client ``delay`` seconds
  after it arrived (chunks keep their order; connections are independent).
- ``hang()`` / ``resume()``: withhold everything from the server until resumed.
- ``requests``: a counter of client->server chunks forwarded, with
  ``wait_requests(n)`` to synchronise on "the request has reached the server"
  without sleeping; ``received`` / ``wait_received(n)`` count every chunk the
  proxy read from a client, forwarded or not.
- ``reset()``: RST every client connection now (``SO_LINGER`` 0, then close).
  ``reset(on="request")`` arms a reset of the connection that sends the next
  request (not forwarded: the server never sees it); ``reset(on="reply",
  after_bytes=K)`` forwards the request and resets after delivering ``K``
  bytes of its reply.
- ``cut_reply(K)``: like ``reset(on="reply")`` but a clean close (FIN).
- ``blackhole()`` / ``blackhole(False)``: read requests, never forward them,
  never reply, never close.
- ``drip()`` / ``drip(False)``: deliver replies one byte per write.
- ``faults``: how many faults of each kind were injected; ``wait_faults``.
- ``wait_links(n)``: wait until ``n`` client connections are open (0: all closed).

Armed faults (``on=...``, ``cut_reply``) are one-shot per ``times`` and skip
handshakes and heartbeats (``hello``/``isMaster``) unless ``match`` is given:
then they hit the next request whose bytes contain ``match`` (a unique value
in the command makes the fault hit exactly that operation).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]

_HANDSHAKES = {b"hello", b"isMaster", b"ismaster"}


def _command_name(data: bytes) -> bytes:
    """The first key of an OP_MSG's body section (b"" when ``data`` is not one)."""
    # 16-byte header, 4-byte flagBits, section kind 0, int32 doc length, type byte, name.
    if len(data) < 27 or data[12:16] != b"\xdd\x07\x00\x00" or data[20] != 0:
        return b""
    end = data.find(b"\x00", 26)
    return data[26:end] if end > 0 else b""


@dataclass
class _Fault:
    kind: str  # "reset-request", "reset-reply", "cut-reply"
    after_bytes: int = 0
    match: bytes | None = None
    times: int = 1

    def hits(self, data: bytes) -> bool:
        if self.match is not None:
            return self.match in data
        return _command_name(data) not in _HANDSHAKES


@dataclass(eq=False)
class _Link:
    """One client connection and its server connection."""

    cwriter: asyncio.StreamWriter
    swriter: asyncio.StreamWriter
    reply_fault: _Fault | None = None
    reply_sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


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
        self.received = 0
        self.faults: Counter[str] = Counter()
        self._armed: list[_Fault] = []
        self._blackholed = False
        self._drip = False
        self._links: set[_Link] = set()
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

    def reset(
        self,
        *,
        on: str | None = None,
        after_bytes: int = 0,
        match: bytes | None = None,
        times: int = 1,
    ) -> None:
        """RST client connections: all now (``on=None``), or armed on a request or reply."""
        if on is None:
            asyncio.run_coroutine_threadsafe(self._reset_all(), self._loop).result(10)
        elif on == "request":
            self._arm(_Fault("reset-request", 0, match, times))
        elif on == "reply":
            self._arm(_Fault("reset-reply", after_bytes, match, times))
        else:
            raise ValueError(f"on={on!r}: expected None, 'request' or 'reply'")

    def cut_reply(self, after_bytes: int, *, match: bytes | None = None, times: int = 1) -> None:
        """Deliver ``after_bytes`` bytes of the next reply, then close the connection (FIN)."""
        self._arm(_Fault("cut-reply", after_bytes, match, times))

    def blackhole(self, on: bool = True) -> None:
        """Swallow every request from now on (``on=False`` forwards again)."""
        self._blackholed = on

    def drip(self, on: bool = True) -> None:
        """Deliver replies one byte per write (``on=False`` restores whole chunks)."""
        self._drip = on

    def disarm(self) -> None:
        """Forget armed faults that have not fired yet."""
        with self._cond:
            self._armed.clear()

    @property
    def armed(self) -> int:
        with self._cond:
            return sum(f.times for f in self._armed)

    def wait_requests(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` client->server chunks have been forwarded."""
        self._wait(
            lambda: self.requests >= n, timeout, lambda: f"{self.requests} requests, not {n}"
        )

    def wait_received(self, n: int, timeout: float = 10.0) -> None:
        """Block until the proxy has read at least ``n`` chunks from clients."""
        self._wait(lambda: self.received >= n, timeout, lambda: f"{self.received} chunks, not {n}")

    def wait_faults(self, kind: str, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` faults of ``kind`` have been injected."""
        self._wait(
            lambda: self.faults[kind] >= n, timeout, lambda: f"{self.faults[kind]} {kind}, not {n}"
        )

    def wait_links(self, n: int, timeout: float = 10.0) -> None:
        """Block until exactly ``n`` client connections are open (their sockets closed)."""
        self._wait(lambda: len(self._links) == n, timeout, lambda: f"{len(self._links)} links")

    def _wait(self, pred: object, timeout: float, what: object) -> None:
        with self._cond:
            if not self._cond.wait_for(pred, timeout):  # type: ignore[arg-type]
                raise TimeoutError(f"proxy saw {what()}")  # type: ignore[operator]

    def _arm(self, fault: _Fault) -> None:
        with self._cond:
            self._armed.append(fault)

    def _count(self, kind: str) -> None:
        with self._cond:
            self.faults[kind] += 1
            self._cond.notify_all()

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

    async def _reset_all(self) -> None:
        for link in list(self._links):
            _rst(link.cwriter)
            link.done.set()
            self._count("reset")

    def _take_fault(self, data: bytes) -> _Fault | None:
        with self._cond:
            for fault in self._armed:
                if fault.hits(data):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._armed.remove(fault)
                    return fault
        return None

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            cwriter.close()
            return
        link = _Link(cwriter, swriter)
        with self._cond:
            self._links.add(link)
        self._writers |= {cwriter, swriter}
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        tasks = [
            asyncio.ensure_future(self._upstream(creader, link)),
            asyncio.ensure_future(self._read_replies(sreader, queue)),
            asyncio.ensure_future(self._deliver(queue, link)),
            asyncio.ensure_future(link.done.wait()),
        ]
        with contextlib.suppress(asyncio.CancelledError):  # stopping: close quietly
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (cwriter, swriter):
            w.close()
        for w in (cwriter, swriter):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await w.wait_closed()
            self._writers.discard(w)
        with self._cond:
            self._links.discard(link)
            self._cond.notify_all()

    async def _upstream(self, reader: asyncio.StreamReader, link: _Link) -> None:
        while data := await reader.read(65536):
            with self._cond:
                self.received += 1
                self._cond.notify_all()
            if self._blackholed:
                self._count("blackhole")
                continue
            fault = self._take_fault(data)
            if fault is not None and fault.kind == "reset-request":
                _rst(link.cwriter)
                self._count("reset-request")
                return
            if fault is not None:
                link.reply_fault, link.reply_sent = fault, 0
            link.swriter.write(data)
            await link.swriter.drain()
            with self._cond:
                self.requests += 1
                self._cond.notify_all()

    async def _read_replies(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]
    ) -> None:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + self.delay, data))
        queue.put_nowait((0.0, b""))

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]], link: _Link) -> None:
        writer = link.cwriter
        while True:
            due, data = await queue.get()
            if not data:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._flowing.wait()
            fault = link.reply_fault
            if fault is not None and link.reply_sent + len(data) >= fault.after_bytes:
                await self._send(writer, data[: fault.after_bytes - link.reply_sent])
                if fault.kind == "reset-reply":
                    _rst(writer)
                else:
                    writer.close()
                self._count(fault.kind)
                return
            if fault is not None:
                link.reply_sent += len(data)
            await self._send(writer, data)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            if not self._drip:
                writer.write(data)
                await writer.drain()
                return
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0)

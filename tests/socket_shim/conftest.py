"""Fixtures for the socket shim tests: loopback pairs, certificates, a TLS proxy, a dead address.

``TLSProxy`` terminates TLS on 127.0.0.1 and forwards plain bytes to the test
server. It runs on its own asyncio loop in a thread, like ``support/proxy.py``.
It records what each client sent: the SNI name (None when the client sent
none) and the client certificate. ``hold()`` makes new connections wait
before the TLS handshake until ``release()`` (or ``hold_limit`` seconds); TLS
starts on the accepted socket only then, so the ClientHello waits unread.
``silent_address`` is a listener with a full accept queue: connects to it hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme


@pytest.fixture
def pair() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    """Factory of connected 127.0.0.1 TCP pairs (blocking, no timeout); all closed after."""
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            a = socket.create_connection(listener.getsockname(), timeout=5)
            b, _ = listener.accept()
        a.settimeout(None)
        b.settimeout(None)
        made.extend((a, b))
        return a, b

    yield make
    for s in made:
        s.close()


@dataclass
class TLSMaterial:
    ca: trustme.CA  # the CA clients trust (tlsCAFile)
    ca_file: str
    good: trustme.LeafCert  # localhost and 127.0.0.1, from the trusted CA
    wrong_name: trustme.LeafCert  # only "other.example", from the trusted CA
    untrusted: trustme.LeafCert  # localhost and 127.0.0.1, from a CA nobody trusts
    client_file: str  # a client certificate and key from the trusted CA (tlsCertificateKeyFile)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    ca, rogue = trustme.CA(), trustme.CA()
    tmp = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    client = ca.issue_cert("client.example")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp / "client.pem"))
    return TLSMaterial(
        ca=ca,
        ca_file=str(Path(tmp, "ca.pem")),
        good=ca.issue_cert("localhost", "127.0.0.1"),
        wrong_name=ca.issue_cert("other.example"),
        untrusted=rogue.issue_cert("localhost", "127.0.0.1"),
        client_file=str(Path(tmp, "client.pem")),
    )


class TLSProxy:
    def __init__(self, target: tuple[str, int], cert: trustme.LeafCert,
                 client_ca: trustme.CA | None = None, hold_limit: float = 10.0) -> None:
        self.target = target
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.ctx)
        if client_ca is not None:
            client_ca.configure_trust(self.ctx)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.sni_callback = self._sni
        self.sni_names: list[str | None] = []
        self.client_certs: list[dict[str, Any]] = []
        self.hold_limit = hold_limit
        self.held = threading.Event()  # set when a connection is being held
        self.released_in_time: list[bool] = []  # per held connection: released before the limit?
        self.port = 0
        self._holding = threading.Event()
        self._release: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, ctx: None)  # failed handshakes are the point
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._thread = threading.Thread(target=self._run, name="tls-proxy", daemon=True)

    def _sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        self.sni_names.append(name)

    # -- control, from any thread ----------------------------------------------------
    def start(self) -> TLSProxy:
        self._thread.start()
        assert self._ready.wait(10), "the TLS proxy did not start"
        return self

    def hold(self) -> None:
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()
        assert self._release is not None
        self._loop.call_soon_threadsafe(self._release.set)

    def stop(self) -> None:
        async def close() -> None:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._listener.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- the proxy, on its own loop -------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._release = asyncio.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept())
        self._ready.set()
        self._loop.run_forever()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self) -> None:
        while True:
            conn, _ = await self._loop.sock_accept(self._listener)
            self._spawn(self._handle(conn))

    async def _handle(self, conn: socket.socket) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            if self._holding.is_set():
                assert self._release is not None
                self.held.set()
                try:
                    await asyncio.wait_for(self._release.wait(), self.hold_limit)
                    self.released_in_time.append(True)
                except TimeoutError:
                    self.released_in_time.append(False)
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await self._loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.ctx
            )
            writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
            cert = writer.get_extra_info("peercert")
            if cert:
                self.client_certs.append(cert)
            sreader, swriter = await asyncio.open_connection(*self.target)
            try:
                await asyncio.gather(_pipe(reader, swriter), _pipe(sreader, writer))
            finally:
                swriter.close()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # a client that rejected us, or went away
        finally:
            if writer is not None:
                writer.close()
            conn.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


@pytest.fixture
def tls_proxy(server_address: tuple[str, int]) -> Iterator[Callable[..., TLSProxy]]:
    """Factory: ``tls_proxy(cert, client_ca=None)`` starts a TLSProxy; all stopped after."""
    proxies: list[TLSProxy] = []

    def make(cert: trustme.LeafCert, client_ca: trustme.CA | None = None,
             hold_limit: float = 10.0) -> TLSProxy:
        proxy = TLSProxy(server_address, cert, client_ca, hold_limit).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def tls_client(make_client: Any, tls: TLSMaterial) -> Callable[..., Any]:
    """Factory: ``tls_client(port, host="localhost", **options)`` trusting the test CA."""

    def make(port: int, host: str = "localhost", **kw: Any) -> Any:
        return make_client(f"mongodb://{host}:{port}", tls=True, tlsCAFile=tls.ca_file, **kw)

    return make


@pytest.fixture
def silent_address() -> Iterator[tuple[str, int]]:
    """A 127.0.0.1 address that never answers a connect: backlog 0, never accepted, filled.

    On Linux (and gVisor) a full accept queue drops further SYNs, so connect()
    waits for its timeout. Checked here; skips where the kernel does otherwise.
    """
    listener, fillers = socket.socket(), []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(8):
            fillers.append(filler := socket.socket())
            filler.settimeout(0.3)
            try:
                filler.connect(listener.getsockname())
            except TimeoutError:
                break  # the queue is full: connects now hang
        else:
            pytest.skip("a full backlog does not make connect() hang on this kernel")
        yield listener.getsockname()
    finally:
        for s in [listener, *fillers]:
            s.close()

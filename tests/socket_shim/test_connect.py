"""Green connection set-up (DNS, TCP connect, TLS) against plain PyMongo, on every loop kind.

Each case runs the plain way (``pool_shared`` functions, or a client in the
test thread) and the green way (in ``@motorpatch.green`` code), and both must
end alike: the same exception class, and the same message where it is
deterministic. Covered: hosts by name and by IP, a refused port,
connectTimeoutMS and CSOT against a full accept queue, and TLS through a
loopback proxy (``conftest.TLSProxy``): valid chain, wrong hostname, untrusted
CA, both ``tlsAllow*`` options, SNI, client certificates, handshake timeout.
The green path is shown to run: pool sockets are ``GreenSocket``s and the loop
ticks while a connect or handshake waits. Only 127.0.0.1 is contacted. (A
failed handshake fails in the plain monitor thread before the pool connects,
so failures are compared for clients and, with the green code itself, at the
function level.)
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymongo
import pytest
from pymongo.errors import NetworkTimeout, ServerSelectionTimeoutError
from pymongo.pool_options import PoolOptions

import motorpatch
from motorpatch.socket_shim import GreenSocket, green_configured_socket
from motorpatch.socket_shim import green_create_connection as green_connect
from tests.support.loops import LagTicker, run_on
from tests.support.pymongo_compat import create_connection, plain_configured_socket, pooled_socket
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("installed")
plain_tls, green_tls = plain_configured_socket, green_configured_socket


def _outcome(fn: Callable[[], Any]) -> Any:
    """``fn()``'s result, or the class and message of what it raised."""
    try:
        return fn()
    except Exception as exc:
        return type(exc), str(exc)


def _in_green(kind: str, fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``fn`` as green code on a fresh loop of ``kind`` and return its result."""
    return run_on(kind, motorpatch.green(fn), timeout)  # type: ignore[arg-type]


def _pool_sockets(client: Any) -> list[Any]:
    return [pooled_socket(c) for s in client._topology._servers.values() for c in s.pool.conns]


def _describe(sock: socket.socket) -> tuple[Any, ...]:
    return (sock.family, sock.type, sock.gettimeout(), sock.getpeername(),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0)


class _CountingExecutor(ThreadPoolExecutor):
    calls = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super().submit(*args, **kwargs)


# -- DNS and TCP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_green_client_works_by_name_and_by_ip(loop_kind, host, make_client, server_address):
    uri = f"mongodb://{host}:{server_address[1]}"
    green_client, plain_client = make_client(uri), make_client(uri)
    coll = plain_client.motorpatch_test[f"c_{uuid.uuid4().hex[:12]}"]
    coll.insert_one({"x": 1})

    def read(client: Any) -> Any:
        return client[coll.database.name][coll.name].find_one({}, {"_id": 0}), _pool_sockets(client)

    doc, socks = _in_green(loop_kind, lambda: read(green_client))
    assert doc == read(plain_client)[0] == {"x": 1}
    assert socks and all(type(s) is GreenSocket and type(s.raw) is socket.socket for s in socks)
    assert all(type(s) is socket.socket for s in _pool_sockets(plain_client))
    coll.drop()


def test_green_dns_resolves_names_off_the_loop_and_ips_inline(loop_kind, server_address):
    port, opts = server_address[1], PoolOptions(connect_timeout=5.0)

    def connect_all() -> dict[str, Any]:
        executor, out = _CountingExecutor(1), {}
        asyncio.get_running_loop().set_default_executor(executor)
        for host in ("127.0.0.1", "localhost"):
            before = executor.calls
            with green_connect((host, port), opts) as sock:
                out[host] = (_describe(sock), executor.calls - before)
        return out

    green = _in_green(loop_kind, connect_all)
    for host in ("127.0.0.1", "localhost"):
        with create_connection((host, port), opts) as plain:
            assert green[host][0] == _describe(plain)
    assert green["127.0.0.1"][1] == 0, "an IP literal went to the resolver thread pool"
    if loop_kind != "uvloop":  # uvloop resolves on libuv's own threads, not the executor
        assert green["localhost"][1] == 1, "the name was not resolved on the loop's executor"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_connection_refused_is_the_same_error_as_plain(loop_kind, host):
    address, opts = (host, free_port()), PoolOptions(connect_timeout=5.0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5)
    plain = _outcome(lambda: create_connection(address, opts))
    assert plain[0] is ConnectionRefusedError
    assert _in_green(loop_kind, lambda: _outcome(lambda: green_connect(address, opts))) == plain
    assert _outcome(lambda: green_connect(address, opts)) == plain  # a plain thread, no loop
    client = pymongo.MongoClient(f"mongodb://{host}:{address[1]}", serverSelectionTimeoutMS=300)
    with client:
        plain, green = _outcome(client.db.c.find_one), _in_green(
            loop_kind, lambda: _outcome(client.db.c.find_one))
    assert plain[0] is green[0] is ServerSelectionTimeoutError
    assert "refused" in plain[1] and "refused" in green[1]


@pytest.mark.parametrize("bound", ["connectTimeoutMS", "CSOT"])
def test_connect_timeout_is_the_same_error_as_plain(loop_kind, silent_address, bound):
    limit = 0.4
    opts = PoolOptions(connect_timeout=limit if bound == "connectTimeoutMS" else 30.0)

    def connect(fn: Callable[..., Any]) -> tuple[Any, float]:
        start = time.monotonic()
        with pymongo.timeout(limit if bound == "CSOT" else None):
            return _outcome(lambda: fn(silent_address, opts)), time.monotonic() - start

    plain, plain_took = connect(create_connection)
    assert plain == (TimeoutError, "timed out")

    async def main() -> tuple[Any, LagTicker]:
        with LagTicker() as ticker:
            return await motorpatch.green(connect)(green_connect), ticker  # type: ignore[misc]

    (green, took), ticker = run_on(loop_kind, main)
    assert green == plain
    assert limit * 0.9 <= took < limit + 1.0 and limit * 0.9 <= plain_took < limit + 1.0
    # A blocked loop: a handful of ticks, one late by the whole wait (busy boxes stall ~0.15 s).
    assert len(ticker.lags) >= 20 and ticker.max < 0.3, (len(ticker.lags), ticker.max)


def test_unix_socket_connect_waits_for_room_like_plain(loop_kind, tmp_path):
    path, opts = str(tmp_path / "m.sock"), PoolOptions(connect_timeout=5.0)
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as queued:
        listener.bind(path)
        listener.listen(0)
        queued.connect(path)  # the accept queue is now full
        got: list[Any] = []

        def make_room() -> None:
            listener.accept()[0].close()

        def peer(connect: Callable[..., socket.socket]) -> Any:
            with connect((path, None), opts) as sock:
                return sock.getpeername()

        t = threading.Thread(target=lambda: got.append(peer(create_connection)),
                             daemon=True)
        t.start()
        make_room()  # for the plain connect, whether it is waiting already or not
        t.join(5)
        assert got == [path]

        def green() -> Any:  # the queue is full again (the plain connection is in it)
            asyncio.get_running_loop().call_later(0.2, make_room)
            return _outcome(lambda: peer(green_connect))

        assert _in_green(loop_kind, green) == path


# -- TLS ------------------------------------------------------------------------------------------

TLS_CASES = {  # id: (server certificate, client options, connects?)
    "valid-chain": ("good", {}, True),
    "wrong-hostname": ("wrong_name", {}, False),
    "untrusted-ca": ("untrusted", {}, False),
    "allow-invalid-certificates": ("untrusted", {"tlsAllowInvalidCertificates": True}, True),
    "allow-invalid-hostnames": ("wrong_name", {"tlsAllowInvalidHostnames": True}, True),
}


@pytest.mark.parametrize("case", list(TLS_CASES))
def test_tls_client_outcome_is_the_same_plain_and_green(loop_kind, case, tls, tls_proxy,
                                                        tls_client):
    cert, options, connects = TLS_CASES[case]
    port = tls_proxy(getattr(tls, cert)).port
    options = options if connects else {**options, "serverSelectionTimeoutMS": 500}
    plain_client, green_client = tls_client(port, **options), tls_client(port, **options)
    plain = _outcome(plain_client.motorpatch_test.absent.find_one)
    green = _in_green(loop_kind, lambda: _outcome(green_client.motorpatch_test.absent.find_one))
    if connects:
        assert plain is green is None
        socks = _pool_sockets(green_client)
        assert socks and all(isinstance(s, GreenSocket) for s in socks)
        assert all(isinstance(s.raw, ssl.SSLSocket) and s.version() for s in socks)
        assert all(isinstance(s, ssl.SSLSocket) for s in _pool_sockets(plain_client))
    else:
        assert plain[0] is green[0] is ServerSelectionTimeoutError
        assert "CERTIFICATE_VERIFY_FAILED" in plain[1] and "CERTIFICATE_VERIFY_FAILED" in green[1]


@pytest.mark.parametrize("case", list(TLS_CASES))
def test_green_tls_handshake_outcome_is_the_same_as_plain(loop_kind, case, tls, tls_proxy,
                                                          tls_client):
    cert, options, connects = TLS_CASES[case]
    port = tls_proxy(getattr(tls, cert)).port
    opts = tls_client(port, connect=False, **options).options.pool_options

    def handshake(fn: Callable[..., Any]) -> Any:
        sock = _outcome(lambda: fn(("localhost", port), opts))
        if isinstance(sock, tuple):
            return sock
        try:
            return type(sock.raw if isinstance(sock, GreenSocket) else sock), sock.version()
        finally:
            sock.close()

    plain = handshake(plain_tls)
    assert _in_green(loop_kind, lambda: handshake(green_tls)) == plain
    # A certificate error is raised as is (pool.connect wraps it), as PyMongo does.
    assert plain[0] is (ssl.SSLSocket if connects else ssl.SSLCertVerificationError)


@pytest.mark.parametrize("host_sni", [("localhost", "localhost"), ("127.0.0.1", None)])
def test_sni_is_what_plain_pymongo_sends(loop_kind, host_sni, tls, tls_proxy, tls_client):
    """Python sends no SNI for an IP literal; the green handshake must not either."""
    (host, sni), proxy = host_sni, tls_proxy(tls.good)
    opts = tls_client(proxy.port, host, connect=False).options.pool_options
    plain_tls((host, proxy.port), opts).close()
    plain = proxy.sni_names[-1]
    _in_green(loop_kind, lambda: green_tls((host, proxy.port), opts).close())
    assert proxy.sni_names[-1] == plain == sni
    client = tls_client(proxy.port, host)
    _in_green(loop_kind, lambda: client.admin.command("ping"))
    assert set(proxy.sni_names) == {sni}


def test_client_certificate_is_presented_plain_and_green(loop_kind, tls, tls_proxy, tls_client):
    proxy = tls_proxy(tls.good, client_ca=tls.ca)
    plain_client = tls_client(proxy.port, tlsCertificateKeyFile=tls.client_file)
    green_client = tls_client(proxy.port, tlsCertificateKeyFile=tls.client_file)
    assert plain_client.admin.command("ping")["ok"] == 1
    plain_certs = len(proxy.client_certs)
    assert _in_green(loop_kind, lambda: green_client.admin.command("ping"))["ok"] == 1
    assert len(proxy.client_certs) > plain_certs >= 1
    assert all(isinstance(s, GreenSocket) for s in _pool_sockets(green_client))
    assert {c["subjectAltName"] for c in proxy.client_certs} == {(("DNS", "client.example"),)}

    # Without one, TLS 1.3 lets the client finish its handshake; its first read fails
    # (an alert, or just EOF), and clients never find a usable server.
    no_cert = tls_client(proxy.port, serverSelectionTimeoutMS=500)

    def first_read_fails(fn: Callable[..., Any]) -> bool:
        sock = fn(("localhost", proxy.port), no_cert.options.pool_options)
        sock.settimeout(5)
        got = _outcome(lambda: sock.recv(16))
        sock.close()
        return got == b"" or (isinstance(got, tuple) and issubclass(got[0], OSError))

    assert first_read_fails(plain_tls)
    assert _in_green(loop_kind, lambda: first_read_fails(green_tls))
    find = no_cert.db.coll.find_one
    plain, green = _outcome(find), _in_green(loop_kind, lambda: _outcome(find))
    assert plain[0] is green[0] is ServerSelectionTimeoutError


def test_loop_ticks_while_the_tls_handshake_waits(loop_kind, tls, tls_proxy, tls_client):
    proxy = tls_proxy(tls.good, hold_limit=5.0)
    opts = tls_client(proxy.port, connect=False).options.pool_options
    proxy.hold()

    async def main() -> tuple[Any, int]:
        with LagTicker() as ticker:
            connect = motorpatch.green(green_tls)
            task = asyncio.ensure_future(connect(("localhost", proxy.port), opts))
            assert await asyncio.to_thread(proxy.held.wait, 10)
            start = len(ticker.lags)
            await asyncio.sleep(0.2)  # a window to count ticks in, not a synchronisation
            during = len(ticker.lags) - start
            proxy.release()
            return await task, during

    sock, during = run_on(loop_kind, main)
    sock.close()
    assert proxy.released_in_time == [True], "the handshake blocked the loop"
    assert isinstance(sock, GreenSocket) and isinstance(sock.raw, ssl.SSLSocket)
    assert during >= 10, "the loop did not tick while the handshake waited"


def test_tls_handshake_timeout_is_the_same_error_as_plain(loop_kind, tls, tls_proxy, tls_client):
    proxy = tls_proxy(tls.good)
    proxy.hold()  # never released: the server never answers the ClientHello
    opts = tls_client(proxy.port, connect=False, connectTimeoutMS=300).options.pool_options
    connect = lambda fn: _outcome(lambda: fn(("localhost", proxy.port), opts))  # noqa: E731
    plain, start = connect(plain_tls), time.monotonic()
    green = _in_green(loop_kind, lambda: connect(green_tls))
    assert 0.25 <= time.monotonic() - start < 2.0
    assert plain[0] is green[0] is NetworkTimeout
    assert all("handshake operation timed out" in msg for msg in (plain[1], green[1]))


@pytest.mark.parametrize("stage", ["connect", "tls-handshake"])
def test_cancelled_green_connect_closes_its_socket(loop_kind, stage, request):
    if stage == "connect":
        address, opts = request.getfixturevalue("silent_address"), PoolOptions(connect_timeout=10)
    else:
        proxy = request.getfixturevalue("tls_proxy")(request.getfixturevalue("tls").good)
        proxy.hold()
        address = ("127.0.0.1", proxy.port)
        client = request.getfixturevalue("tls_client")(proxy.port, "127.0.0.1", connect=False)
        opts = client.options.pool_options

    async def main() -> None:
        with pytest.raises(TimeoutError):  # wait_for cancels the parked greenlet
            await asyncio.wait_for(motorpatch.green(green_tls)(
                address, opts), 0.3)

    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        run_on(loop_kind, main)
        gc.collect()
    assert not [str(w.message) for w in caught if "unclosed <" in str(w.message)]


def test_large_documents_cross_tls_in_green_code(loop_kind, tls, tls_proxy, tls_client):
    coll = tls_client(tls_proxy(tls.good).port).motorpatch_test[f"big_{uuid.uuid4().hex[:8]}"]
    blob = "x" * (6 * 1024 * 1024)

    def round_trip() -> Any:
        coll.insert_one({"_id": 1, "blob": blob})
        return coll.find_one({"_id": 1})

    try:
        assert _in_green(loop_kind, round_trip)["blob"] == blob
    finally:
        coll.drop()

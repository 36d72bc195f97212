"""GreenSocket next to a real socket: the same results and exceptions, and parking in green code.

Only real 127.0.0.1 TCP pairs, no mocks. In plain threads with no event
loop, each case runs on the real socket ("reference") and on a GreenSocket
("green"): blocking reads, timeouts, timeout and blocking settings, an 8 MB
sendall read back in pieces, EOF, close and attribute passthrough. In
``@motorpatch.green`` functions on each loop kind: a read that waits parks
the greenlet while the loop keeps running and delivers the data. Reads on
many sockets overlap. A timed-out read leaves no reader on the loop and can
be retried, which PyMongo's ``receive_data`` relies on with its 0.5 s poll
slices. One socket works on loop A, then a plain thread, then loop B. Data
sent in chunks is reassembled as PyMongo reads it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.socket_checker import SocketChecker

import motorpatch
from motorpatch.socket_shim import GreenSocket
from tests.support.loops import LOOP_KINDS, LagTicker, run_on
from tests.support.pymongo_compat import CancellationContext, connection_holder, receive_data

CHUNKS = [os.urandom(1 + (i * 37) % 97) for i in range(60)]
PAYLOAD = b"".join(CHUNKS)


@pytest.fixture(params=["reference", "green"])
def wrap(request: pytest.FixtureRequest) -> Callable[[socket.socket], Any]:
    """The socket under test: the real socket itself, or a GreenSocket around it."""
    return (lambda s: s) if request.param == "reference" else GreenSocket


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return type(exc), str(exc)


def _read_in_pieces(s: Any, length: int, on_read: Callable[[int], None]) -> tuple[bytes, int]:
    """PyMongo's receive_data loop: recv_into a moving memoryview until ``length`` bytes."""
    mv = memoryview(bytearray(length))
    got = calls = 0
    while got < length:
        n = s.recv_into(mv[got:])
        assert n, "connection closed early"
        got, calls = got + n, calls + 1
        on_read(got)
    return bytes(mv), calls


# -- outside green code: a plain thread, no event loop ------------------------------------------


BLOCKING = {  # ways to be (back) in blocking mode
    "default": lambda s: None,
    "settimeout(None)": lambda s: (s.settimeout(0.0), s.settimeout(None)),
    "setblocking(True)": lambda s: (s.setblocking(False), s.setblocking(True)),
}


@pytest.mark.parametrize("mode", list(BLOCKING))
def test_recv_into_blocks_until_data(pair, wrap, mode):
    a, b = pair()
    s = wrap(a)
    BLOCKING[mode](s)
    started, done, buf, result = threading.Event(), threading.Event(), bytearray(16), []

    def reader() -> None:
        started.set()
        result.append(s.recv_into(buf))
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    assert started.wait(5)
    assert not done.wait(0.2), "recv_into returned with no data sent"
    b.sendall(b"hello")
    assert done.wait(5), "recv_into did not return once data arrived"
    assert result == [5] and bytes(buf[:5]) == b"hello"


def test_timeouts_and_non_blocking_mode(pair, wrap):
    a, b = pair()
    s = wrap(a)
    s.settimeout(0.2)
    start = time.monotonic()
    with pytest.raises(socket.timeout, match=r"^timed out$") as info:
        s.recv_into(bytearray(8))
    assert 0.18 <= time.monotonic() - start < 2.0
    assert type(info.value) is TimeoutError
    s.settimeout(0.0)
    with pytest.raises(BlockingIOError):
        s.recv_into(bytearray(8))
    s.settimeout(None)
    s.setblocking(False)
    with pytest.raises(BlockingIOError):
        s.recv(8)
    b.sendall(b"ready")
    s.setblocking(True)
    assert s.recv(5) == b"ready"


def _settimeout(value: Any) -> Callable[[Any], Any]:
    return lambda s: (s.settimeout(value), s.gettimeout(), type(s.gettimeout()))


def _setblocking(flag: bool) -> Callable[[Any], Any]:
    return lambda s: (s.setblocking(flag), s.gettimeout(), s.getblocking())


@pytest.mark.parametrize("op", [
    *(pytest.param(_settimeout(v), id=f"settimeout({v!r})")
      for v in (None, 0, 0.0, 2.5, 3, True, -1, -0.001)),
    pytest.param(_settimeout("1"), id="settimeout('1')"),
    pytest.param(_settimeout(float("nan")), id="settimeout(nan)"),
    pytest.param(_setblocking(False), id="setblocking(False)"),
    pytest.param(_setblocking(True), id="setblocking(True)"),
])
def test_timeout_and_blocking_settings_match_a_socket(pair, op):
    real, other = pair()
    assert _outcome(lambda: op(GreenSocket(other))) == _outcome(lambda: op(real))


def test_sendall_of_8_mb_and_reading_it_in_pieces(pair, wrap):
    """Both ends wrapped: a thread sends 8 MB, far beyond the socket buffers; the reader
    reassembles it with PyMongo's moving-memoryview recv_into loop."""
    a, b = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # many would-block rounds
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sender, reader = wrap(a), wrap(b)
    sender.settimeout(10)
    reader.settimeout(10)
    data, sent = os.urandom(8 * 1024 * 1024), []
    t = threading.Thread(target=lambda: sent.append(sender.sendall(memoryview(data))), daemon=True)
    t.start()
    received, calls = _read_in_pieces(reader, len(data), lambda n: None)
    t.join(10)
    assert sent == [None] and received == data and calls > 1


def test_eof_fileno_and_close(pair, wrap):
    a, b = pair()
    fd, s = a.fileno(), wrap(a)
    assert s.fileno() == fd
    s.settimeout(5)
    b.shutdown(socket.SHUT_WR)  # the peer closes its side: EOF, as 0 and as b""
    assert s.recv_into(bytearray(8)) == 0
    assert s.recv(8) == b""
    s.close()
    assert s.fileno() == a.fileno() == -1
    b.settimeout(5)
    assert b.recv(1) == b"", "the peer did not see the connection close"
    with pytest.raises(OSError) as info:
        s.recv_into(bytearray(8))
    assert info.value.errno == errno.EBADF


def test_attributes_pass_through(pair, wrap):
    a, b = pair()
    s = wrap(a)
    assert (s.getsockname(), s.getpeername()) == (a.getsockname(), b.getsockname())
    assert (s.family, s.type) == (socket.AF_INET, socket.SOCK_STREAM)
    for flag in (1, 0):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, flag)
        assert bool(a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) == bool(flag)


# -- in green code, on each loop kind ------------------------------------------------------------

green_test = pytest.mark.usefixtures("installed")


@green_test
def test_waiting_reads_park_while_the_loop_ticks(loop_kind, pair):
    """A bare recv, then PyMongo's receive_data across a timed-out 0.5 s poll slice: both
    park, the loop keeps ticking, and what its callbacks send arrives."""
    a, b = pair()
    g = GreenSocket(a)
    g.settimeout(5)  # a blocked loop ends in TimeoutError here, not in a hang
    holder = connection_holder(g)
    conn = SimpleNamespace(  # what receive_data uses of PyMongo's Connection
        conn=holder, cancel_context=CancellationContext(), is_sdam=False,
        set_conn_timeout=holder.settimeout, socket_checker=SocketChecker(),
    )

    @motorpatch.green
    def read() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, b.sendall, b"from the loop")
        first = g.recv(64)
        loop.call_later(0.6, b.sendall, PAYLOAD[:100])  # after the first 0.5 s slice ran out
        loop.call_later(0.65, b.sendall, PAYLOAD[100:])
        deadline = time.monotonic() + 5
        return first, bytes(receive_data(conn, len(PAYLOAD), deadline))  # type: ignore[arg-type]

    async def main() -> tuple[Any, LagTicker]:
        with LagTicker() as ticker:
            return await read(), ticker  # type: ignore[misc]

    data, ticker = run_on(loop_kind, main, timeout=20)
    assert data == (b"from the loop", PAYLOAD)
    assert g.gettimeout() == 5, "receive_data restores the original timeout"
    # A blocked loop: a handful of ticks, one late by a whole wait. A busy 2-core box can
    # delay one by ~0.15 s, so the bound is loose.
    assert len(ticker.lags) >= 20 and ticker.max < 0.28, (len(ticker.lags), ticker.max)


@green_test
def test_reads_on_many_sockets_overlap(loop_kind, pair):
    n = 40
    pairs = [pair() for _ in range(n)]

    async def main() -> list[bytes]:
        waiting, all_waiting = [0], asyncio.Event()
        deadline = time.monotonic() + 5  # one budget for all, so a blocking read fails fast

        @motorpatch.green
        def read(s: GreenSocket) -> bytes:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            waiting[0] += 1
            if waiting[0] == n:
                all_waiting.set()
            return s.recv(64)

        async def write() -> None:
            await all_waiting.wait()  # reachable only if every reader is parked at once
            for i, (_, b) in reversed(list(enumerate(pairs))):
                b.sendall(b"pair-%d" % i)

        *results, _ = await asyncio.gather(*(read(GreenSocket(a)) for a, _ in pairs), write())
        return results

    assert run_on(loop_kind, main, timeout=20) == [b"pair-%d" % i for i in range(n)]


@green_test
def test_timed_out_read_leaves_no_reader_and_can_be_retried(loop_kind, pair):
    a, b = pair()
    g = GreenSocket(a)

    @motorpatch.green
    def read() -> tuple[list[float], bytes]:
        loop, took = asyncio.get_running_loop(), []
        # asyncio and Tornado say whether remove_reader removed one; uvloop returns None.
        no_reader = lambda: loop.remove_reader(g.fileno()) is not True  # noqa: E731
        g.settimeout(0.02)
        for _ in range(10):  # timed-out waits in a row, like idle poll slices
            start = time.monotonic()
            with pytest.raises(TimeoutError, match=r"^timed out$"):
                g.recv_into(bytearray(8))
            took.append(time.monotonic() - start)
            assert no_reader(), "a timed-out read left a reader on the loop"
        loop.call_soon(b.sendall, b"late")  # runs once the next read has parked
        g.settimeout(5)
        data = g.recv(8)
        assert no_reader()
        return took, data

    took, data = run_on(loop_kind, read, timeout=20)  # type: ignore[arg-type,return-value]
    assert data == b"late"
    assert all(0.015 <= t < 1.0 for t in took), took


@green_test
def test_one_socket_serves_loop_a_then_a_thread_then_loop_b(loop_kind, pair):
    a, b = pair()
    g = GreenSocket(a)
    g.settimeout(5)
    other_kind = LOOP_KINDS[(LOOP_KINDS.index(loop_kind) + 1) % len(LOOP_KINDS)]

    def on_loop(kind: str, payload: bytes) -> bytes:
        @motorpatch.green
        def read() -> bytes:
            asyncio.get_running_loop().call_soon(b.sendall, payload)  # runs once we park
            return g.recv(64)

        return run_on(kind, read, timeout=20)  # type: ignore[arg-type,return-value]

    def in_thread() -> bytes:
        started, got = threading.Event(), []
        t = threading.Thread(target=lambda: (started.set(), got.append(g.recv(64))), daemon=True)
        t.start()
        assert started.wait(5)
        b.sendall(b"thread")
        t.join(5)
        return got[0]

    assert on_loop(loop_kind, b"loop A") == b"loop A"
    assert in_thread() == b"thread"
    assert on_loop(other_kind, b"loop B") == b"loop B"
    assert on_loop(loop_kind, b"loop A again") == b"loop A again"


@green_test
def test_chunks_are_reassembled_in_green_code(loop_kind, pair):
    a, b = pair()
    g = GreenSocket(a)
    g.settimeout(5)

    async def main() -> tuple[bytes, int]:
        progressed, got = asyncio.Event(), [0]

        def on_read(n: int) -> None:  # green code runs on the loop's thread
            got[0] = n
            progressed.set()

        async def write() -> None:
            sent = 0
            for chunk in CHUNKS:  # each chunk only once the previous one was read
                b.sendall(chunk)
                sent += len(chunk)
                while got[0] < sent:  # no await between the check and the wait
                    progressed.clear()
                    await progressed.wait()

        read = motorpatch.green(lambda: _read_in_pieces(g, len(PAYLOAD), on_read))
        result, _ = await asyncio.gather(read(), write())
        return result  # type: ignore[no-any-return]

    data, calls = run_on(loop_kind, main, timeout=20)
    assert data == PAYLOAD and calls >= len(CHUNKS)

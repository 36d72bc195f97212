"""Two shapes for the green socket, measured side by side on loopback.

    python bench/socket_designs.py            # full run (about 8 minutes)
    python bench/socket_designs.py --quick    # smoke run (a few seconds, noisy numbers)

Workload: MongoDB-shaped request/reply. The client sends a 100-byte request
(a 16-byte wire header + body); a canned-reply responder in a separate process
answers with a 16-byte header + 200-byte body. The client reads the reply as
PyMongo does: the 16-byte header, then ``messageLength - 16`` bytes.

Designs:
  (a)  IOStream   one ``tornado.iostream.IOStream`` per connection, driven from
                  ``@motorpatch.green`` code: ``await_(stream.write(..))`` and
                  ``await_(stream.read_into(..))`` (exact-length reads).
  (a*)            IOStream given its best chance: ``await_`` only when the future
                  is still pending (a completed write or read is taken at once),
                  plus the timer a socket honouring PyMongo's 0.5 s read slices
                  needs (``tornado.gen.with_timeout``, armed only for a pending read).
  (b)  readiness  ``motorpatch.socket_shim.GreenSocket`` with ``sendall`` and
                  PyMongo's ``receive_data`` loop (``settimeout(0.5)`` +
                  ``recv_into(mv[n:])``) inside ``@motorpatch.green``.
  (c)  baseline   the same PyMongo-shaped loop on plain blocking sockets, one
                  thread, no event loop. At concurrency 50 the thread keeps 50
                  requests in flight: it sends on all 50 sockets, then reads 50 replies.
  (d)  threads    (concurrency 50 only, for reference) 50 threads, one blocking
                  socket each: what plain PyMongo does in a threaded app.

CPU per round trip is ``time.process_time()`` of this (client) process divided
by round trips; the responder's CPU is in another process and excluded. With
two or more CPUs the client is pinned to CPU 0 and the responder to CPU 1.

After the measurements the script runs functional checks of what PyMongo needs
from a socket (a timed-out read slice must be resumable; one connection must
serve a plain thread and another event loop next) against both designs, and
prints what it observed as PASS/FAIL lines. Results go to stdout and to
``bench/socket_designs.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import logging
import os
import platform
import resource
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import greenlet
import pymongo
import tornado
import tornado.gen
import tornado.iostream

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import motorpatch  # noqa: E402
from motorpatch.socket_shim import GreenSocket  # noqa: E402

try:
    import uvloop
except ImportError:  # pragma: no cover - the venv has it
    uvloop = None

# -- the wire shape ------------------------------------------------------------------------------
HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
OP_MSG = 2013
REQUEST_SIZE = 100
REPLY_BODY = 200
REPLY_SIZE = HEADER.size + REPLY_BODY
POLL_SLICE = 0.5  # pymongo.network_layer._POLL_TIMEOUT


def make_request(request_id: int) -> bytes:
    return HEADER.pack(REQUEST_SIZE, request_id, 0, OP_MSG) + bytes(REQUEST_SIZE - HEADER.size)


def make_reply(request_id: int) -> bytes:
    return HEADER.pack(REPLY_SIZE, 0, request_id, OP_MSG) + b"r" * REPLY_BODY


# -- the responder process -------------------------------------------------------------------------
def serve() -> None:
    """Answer every request on 127.0.0.1 with a canned reply; print the port; stop at stdin EOF."""
    body = b"r" * REPLY_BODY

    class Responder(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = bytearray()

        def data_received(self, data: bytes) -> None:
            buf = self.buf
            buf += data
            out = []
            while len(buf) >= HEADER.size:
                length, request_id, _, _ = HEADER.unpack_from(buf)
                if len(buf) < length:
                    break
                out.append(HEADER.pack(REPLY_SIZE, 0, request_id, OP_MSG) + body)
                del buf[:length]
            if out:
                self.transport.write(b"".join(out))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Responder, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        parent_gone = asyncio.Event()  # stdin is a pipe from the client: EOF when it exits
        loop.add_reader(sys.stdin.fileno(), parent_gone.set)
        await parent_gone.wait()

    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())


def start_responder() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    if _can_pin():
        os.sched_setaffinity(proc.pid, {1})
    return proc, port


def _can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- PyMongo's read loop (network_layer.receive_data, non-Windows branch, no deadline) -------------
def receive_data(sock: Any, length: int) -> memoryview:
    mv = memoryview(bytearray(length))
    bytes_read = 0
    orig_timeout = sock.gettimeout()
    try:
        while bytes_read < length:
            sock.settimeout(POLL_SLICE)
            try:
                chunk = sock.recv_into(mv[bytes_read:])
            except TimeoutError:
                continue
            if chunk == 0:
                raise OSError("connection closed")
            bytes_read += chunk
    finally:
        sock.settimeout(orig_timeout)
    return mv


def check_reply(header: memoryview, request_id: int) -> int:
    length, _, response_to, _ = HEADER.unpack_from(header)
    if response_to != request_id:
        raise AssertionError(f"reply to {response_to}, expected {request_id}")
    return int(length)


def sock_round_trip(sock: Any, request_id: int) -> None:
    """One round trip as PyMongo does it (plain socket or GreenSocket)."""
    sock.sendall(make_request(request_id))
    length = check_reply(receive_data(sock, HEADER.size), request_id)
    receive_data(sock, length - HEADER.size)


def stream_round_trip(stream: tornado.iostream.IOStream, request_id: int, tuned: bool) -> None:
    """One round trip on an IOStream, from green code: (a), or (a*) when ``tuned``."""
    settle = _settle_tuned if tuned else motorpatch.await_
    settle(stream.write(make_request(request_id)))
    header = memoryview(bytearray(HEADER.size))
    settle(stream.read_into(header))  # type: ignore[arg-type]
    length = check_reply(header, request_id)
    settle(stream.read_into(memoryview(bytearray(length - HEADER.size))))  # type: ignore[arg-type]


_SLICE = datetime.timedelta(seconds=POLL_SLICE)


def _settle_tuned(fut: Any) -> Any:
    """(a*): take a completed future's result at once; park (with a slice timer) otherwise.

    A slice that times out resumes the same pending future, as PyMongo's next
    ``recv_into`` would have to (a new ``read_into`` raises "Already reading", check 1b).
    """
    if fut.done():
        return fut.result()
    while True:
        try:
            return motorpatch.await_(tornado.gen.with_timeout(_SLICE, fut))
        except TimeoutError:
            continue


# -- the runners: each returns (CPU s, kernel share of it, wall s) for `ops` round trips ---------
Measure = tuple[float, float, float]


def _timed_start() -> tuple[float, float, float, float]:
    gc.collect()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time(), usage.ru_utime, usage.ru_stime, time.perf_counter()


def _timed_end(start: tuple[float, float, float, float]) -> Measure:
    cpu, wall = time.process_time() - start[0], time.perf_counter() - start[3]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    user, system = usage.ru_utime - start[1], usage.ru_stime - start[2]
    return cpu, system / max(user + system, 1e-9), wall


def run_baseline(port: int, conc: int, ops: int) -> Measure:
    socks = [connect(port) for _ in range(conc)]
    try:
        rounds = ops // conc
        for i in range(20):  # warm-up
            for s in socks:
                sock_round_trip(s, i)
        start = _timed_start()
        if conc == 1:
            sock = socks[0]
            for i in range(rounds):
                sock_round_trip(sock, i)
        else:
            for i in range(rounds):
                for s in socks:
                    s.sendall(make_request(i))
                for s in socks:
                    length = check_reply(receive_data(s, HEADER.size), i)
                    receive_data(s, length - HEADER.size)
        return _timed_end(start)
    finally:
        for s in socks:
            s.close()


def run_threads(port: int, conc: int, ops: int) -> Measure:
    socks = [connect(port) for _ in range(conc)]
    rounds = ops // conc
    barrier = threading.Barrier(conc + 1)

    def worker(sock: socket.socket) -> None:
        for i in range(20):
            sock_round_trip(sock, i)
        barrier.wait()
        for i in range(rounds):
            sock_round_trip(sock, i)

    threads = [threading.Thread(target=worker, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    barrier.wait()
    start = _timed_start()
    for t in threads:
        t.join()
    result = _timed_end(start)
    for s in socks:
        s.close()
    return result


def run_on_loop(kind: str, main: Callable[[], Coroutine[Any, Any, Measure]]) -> Measure:
    if kind == "uvloop":
        assert uvloop is not None
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


def run_green(kind: str, port: int, conc: int, ops: int, design: str) -> Measure:
    rounds = ops // conc

    @motorpatch.green
    def client(sock: socket.socket, n: int) -> None:
        if design == "b":
            conn: Any = GreenSocket(sock)
            for i in range(n):
                sock_round_trip(conn, i)
        else:
            stream = tornado.iostream.IOStream(sock)
            for i in range(n):
                stream_round_trip(stream, i, tuned=design == "a*")

    async def main() -> Measure:
        socks = [connect(port) for _ in range(conc)]
        try:
            # Warm up (code paths, the responder) on separate connections, so the measured
            # ones start fresh.
            warm = [connect(port) for _ in range(conc)]
            await asyncio.gather(*(client(s, 20) for s in warm))
            for s in warm:
                s.close()
            start = _timed_start()
            await asyncio.gather(*(client(s, rounds) for s in socks))
            return _timed_end(start)
        finally:
            for s in socks:
                s.close()

    return run_on_loop(kind, main)


# -- a bridge bug the measurements would otherwise hang on ----------------------------------------
def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@motorpatch.green
def _budget_eater(parks: int) -> None:
    _spin(0.003)  # more than the bridge's 1 ms per-iteration budget, then park
    for _ in range(parks):
        motorpatch.await_(asyncio.sleep(0))
        _spin(0.003)


def bridge_livelocks() -> bool:
    """True if green calls spin forever once one ends right after spending the slice budget.

    Two calls that need ~15 ms: the first ends on a resume that spent the budget while
    the second waits for the next slice. A version that armed its budget reset only on
    entry to that wait hung the 50 clients at 100% CPU
    (docs/architecture.md#the-budget-reset-is-re-armed-on-every-pass).
    """

    async def probe() -> bool:
        try:
            await asyncio.wait_for(asyncio.gather(_budget_eater(1), _budget_eater(2)), 1.0)
        except TimeoutError:
            return True
        return False

    return asyncio.run(probe())


def rearm_slice_reset() -> None:
    """Make the driving coroutine wait for the next slice with a copy that re-arms the reset."""
    from motorpatch.bridge import _fairness, _green

    async def wait_for_next_slice(loop: asyncio.AbstractEventLoop) -> None:
        state = _fairness.budget
        while state.spent >= _fairness.SLICE_BUDGET:
            if state.armed is not loop:  # a reset may have run (and been spent) since
                state.armed = loop
                loop.call_soon(_fairness.new_iteration, loop)
            await asyncio.sleep(0)

    _green.wait_for_next_slice = wait_for_next_slice  # type: ignore[assignment]


def bridge_note() -> str:
    from motorpatch.bridge import _green

    if not hasattr(_green, "wait_for_next_slice"):
        return "- bridge: no per-iteration slice budget in this motorpatch"
    if not bridge_livelocks():
        return "- bridge: slice-budget self-test passed (no livelock); motorpatch used as is"
    rearm_slice_reset()
    if bridge_livelocks():
        raise SystemExit("the bridge livelocks even with the re-armed slice reset")
    return (
        "- bridge: **slice-budget livelock reproduced** in this motorpatch (two green calls"
        " spun past a 1 s guard); the bench replaced the bridge's `wait_for_next_slice` with a"
        " copy that re-arms the budget reset inside its wait loop (same semantics otherwise)"
    )


# -- the measurement plan --------------------------------------------------------------------------
def plan(loops: list[str]) -> list[tuple[str, str, int, Callable[[int, int, int], Measure]]]:
    """(design, loop, concurrency, runner(port, conc, ops)) for every row of the table."""
    rows: list[tuple[str, str, int, Callable[[int, int, int], Measure]]] = []
    for conc in (1, 50):
        rows.append(("c", "-", conc, run_baseline))
        if conc > 1:
            rows.append(("d", "-", conc, run_threads))
        for kind in loops:
            for design in ("a", "a*", "b"):
                rows.append((design, kind, conc, _green_runner(kind, design)))
    return rows


def _green_runner(kind: str, design: str) -> Callable[[int, int, int], Measure]:
    return lambda port, conc, ops: run_green(kind, port, conc, ops, design)


NAMES = {
    "a": "(a) IOStream",
    "a*": "(a*) IOStream, tuned",
    "b": "(b) readiness GreenSocket",
    "c": "(c) blocking, 1 thread",
    "d": "(d) blocking, 50 threads",
}


def measure_all(port: int, quick: bool, loops: list[str]) -> list[dict[str, Any]]:
    repeats = 1 if quick else 5
    ops_for = {1: 2_000 if quick else 20_000, 50: 5_000 if quick else 50_000}
    rows = plan(loops)
    samples: dict[int, list[Measure]] = {i: [] for i in range(len(rows))}
    for rep in range(repeats):  # interleaved, so drift hits every design alike
        for i, (design, kind, conc, runner) in enumerate(rows):
            samples[i].append(runner(port, conc, ops_for[conc]))
            cpu, _, wall = samples[i][-1]
            ops = ops_for[conc] // conc * conc
            print(
                f"  rep {rep + 1}/{repeats} {NAMES[design]:<30} {kind:<8} c={conc:<3}"
                f" {cpu / ops * 1e6:7.1f} us CPU/op {ops / wall:9.0f} ops/s",
                flush=True,
            )
    results = []
    for i, (design, kind, conc, _) in enumerate(rows):
        ops = ops_for[conc] // conc * conc
        cpus = [cpu / ops * 1e6 for cpu, _, _ in samples[i]]
        sys_share = [share for _, share, _ in samples[i]]
        rates = [ops / wall for _, _, wall in samples[i]]
        results.append(
            {
                "design": design,
                "loop": kind,
                "conc": conc,
                "cpu_us": statistics.median(cpus),
                "cpu_min": min(cpus),
                "cpu_max": max(cpus),
                "sys": statistics.median(sys_share),
                "ops_s": statistics.median(rates),
            }
        )
    return results


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| design | loop | concurrency | CPU us/round trip (median) | min-max | system share"
        " | ops/s (median) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {NAMES[r['design']]} | {r['loop']} | {r['conc']} | {r['cpu_us']:.1f} |"
            f" {r['cpu_min']:.1f}-{r['cpu_max']:.1f} | {r['sys']:.0%} | {r['ops_s']:,.0f} |"
        )
    return lines


def ratios(results: list[dict[str, Any]], loops: list[str]) -> list[str]:
    cpu = {(r["design"], r["loop"], r["conc"]): r["cpu_us"] for r in results}
    lines = [
        "| loop | concurrency | (a)/(c) | (b)/(c) | (a)/(b) | (a*)/(b) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in loops:
        for conc in (1, 50):
            a, at, b = (cpu[(d, kind, conc)] for d in ("a", "a*", "b"))
            c = cpu[("c", "-", conc)]
            lines.append(
                f"| {kind} | {conc} | {a / c:.2f} | {b / c:.2f} | {a / b:.2f} | {at / b:.2f} |"
            )
    return lines


# -- functional checks -----------------------------------------------------------------------------
class Peer:
    """The server end of a loopback connection, driven by the check (a blocking socket)."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.client = connect(listener.getsockname()[1])
            self.server, _ = listener.accept()

    def answer_after(self, delay: float) -> threading.Thread:
        """In a thread: read one request, wait ``delay`` seconds, send its reply."""

        def run() -> None:
            request = self.server.recv(REQUEST_SIZE, socket.MSG_WAITALL)
            time.sleep(delay)
            self.server.sendall(make_reply(HEADER.unpack_from(request)[1]))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.client.close()
        self.server.close()


def registered(loop: asyncio.AbstractEventLoop, fd: int) -> str:
    """Whether the asyncio selector loop watches ``fd`` (reader/writer), for the reports."""
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return "n/a"
    key = selector.get_map().get(fd)
    return "registered" if key is not None else "not registered"


Outcome = tuple[bool, str]


async def _green_main(fn: Callable[..., Any], *args: Any) -> Any:
    """Await a ``@motorpatch.green`` function as a loop's main coroutine."""
    return await fn(*args)


def check_timeout_cancel() -> Outcome:
    """IOStream: a read slice times out via asyncio.wait_for; PyMongo then calls read again."""
    peer = Peer()
    reply_at = 0.3

    @motorpatch.green
    def run() -> str:
        stream = tornado.iostream.IOStream(peer.client)
        mv = memoryview(bytearray(REPLY_SIZE))
        peer.answer_after(reply_at)
        motorpatch.await_(stream.write(make_request(7)))
        facts = []
        try:
            motorpatch.await_(asyncio.wait_for(stream.read_into(mv), 0.1))  # type: ignore[arg-type]
            facts.append("first slice did not time out")
        except TimeoutError:
            facts.append("slice 1 timed out (future cancelled)")
        try:
            n = motorpatch.await_(asyncio.wait_for(stream.read_into(mv), 1.0))  # type: ignore[arg-type]
            facts.append(f"slice 2 returned {n}")
        except AssertionError as exc:
            facts.append(f"slice 2 raised AssertionError({exc!s})")
        except TimeoutError:
            facts.append("slice 2 timed out")
        motorpatch.await_(asyncio.sleep(reply_at + 0.2))
        landed = bytes(mv) == make_reply(7)
        facts.append(
            "after the reply arrived, the stream had read it into slice 1's buffer "
            f"({'all' if landed else 'not all'} {REPLY_SIZE} bytes) but no call returned a count"
        )
        try:
            fresh = memoryview(bytearray(REPLY_SIZE))
            n = motorpatch.await_(asyncio.wait_for(stream.read_into(fresh), 0.5))  # type: ignore[arg-type]
            facts.append(f"a new read returned {n} bytes")
        except TimeoutError:
            facts.append(
                f"a new read then waited 0.5 s for nothing (stream buffer holds "
                f"{stream._read_buffer_size} bytes): to PyMongo the reply is lost"
            )
        stream.close()
        return "; ".join(facts)

    try:
        facts = asyncio.run(_green_main(run))
    finally:
        peer.close()
    return ("returned 216" in facts and "AssertionError" not in facts), facts


def check_timeout_keep_pending() -> Outcome:
    """IOStream: a read slice times out without cancelling the read (gen.with_timeout)."""
    peer = Peer()

    @motorpatch.green
    def run() -> str:
        stream = tornado.iostream.IOStream(peer.client)
        mv = memoryview(bytearray(REPLY_SIZE))
        peer.answer_after(0.3)
        motorpatch.await_(stream.write(make_request(8)))
        facts = []
        pending = stream.read_into(mv)  # type: ignore[arg-type]
        slice_ = datetime.timedelta(seconds=0.1)
        try:
            motorpatch.await_(tornado.gen.with_timeout(slice_, pending))
        except TimeoutError:
            facts.append("slice 1 timed out (read left pending)")
        try:
            motorpatch.await_(stream.read_into(mv))  # type: ignore[arg-type]
            facts.append("slice 2 (a new read_into, as recv_into would do) started")
        except AssertionError as exc:
            facts.append(f"slice 2 as a new read_into raised AssertionError({exc!s})")
        n = motorpatch.await_(pending)
        ok = bytes(mv) == make_reply(8)
        facts.append(
            f"re-awaiting the pending read instead returned {n} with the reply "
            f"{'intact' if ok else 'corrupted'}"
        )
        stream.close()
        return "; ".join(facts)

    try:
        facts = asyncio.run(_green_main(run))
    finally:
        peer.close()
    return "AssertionError" not in facts, facts


def check_timeout_greensocket() -> Outcome:
    """GreenSocket: the same two slices, through PyMongo's own calls."""
    peer = Peer()

    @motorpatch.green
    def run() -> str:
        loop = asyncio.get_running_loop()
        sock = GreenSocket(peer.client)
        mv = memoryview(bytearray(REPLY_SIZE))
        peer.answer_after(0.3)
        sock.sendall(make_request(9))
        facts = []
        sock.settimeout(0.1)
        try:
            sock.recv_into(mv)
            facts.append("slice 1 did not time out")
        except TimeoutError:
            facts.append(
                f"slice 1 raised socket.timeout, fd {registered(loop, sock.fileno())} afterwards"
            )
        sock.settimeout(1.0)
        n = sock.recv_into(mv)
        ok = n == REPLY_SIZE and bytes(mv) == make_reply(9)
        facts.append(f"slice 2 returned {n} with the reply {'intact' if ok else 'corrupted'}")
        return "; ".join(facts)

    try:
        facts = asyncio.run(_green_main(run))
    finally:
        peer.close()
    return "intact" in facts and "not registered" in facts, facts


def plain_thread_round_trip(sock: socket.socket, request_id: int) -> str:
    """PyMongo's plain path on the raw socket: sendall, then receive_data with a 1 s deadline."""
    sock.settimeout(None)
    sock.sendall(make_request(request_id))
    mv = memoryview(bytearray(REPLY_SIZE))
    n = 0
    deadline = time.monotonic() + 1.0
    while n < REPLY_SIZE:
        sock.settimeout(max(0.0, min(POLL_SLICE, deadline - time.monotonic())))
        try:
            chunk = sock.recv_into(mv[n:])
        except TimeoutError:
            if time.monotonic() >= deadline:
                return f"timed out after 1 s with {n}/{REPLY_SIZE} bytes"
            continue
        except BlockingIOError:
            return f"BlockingIOError with {n}/{REPLY_SIZE} bytes"
        if chunk == 0:
            return "connection closed"
        n += chunk
    return "ok" if bytes(mv) == make_reply(request_id) else "corrupted reply"


class _LogCounter(logging.Handler):
    """Collects Tornado's log records during a check (they are part of what is observed)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def tornado_log() -> Iterator[list[str]]:
    handler = _LogCounter()
    logger = logging.getLogger("tornado")
    logger.addHandler(handler)
    saved, logger.propagate = logger.propagate, False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


async def _max_lag(stop: asyncio.Event, interval: float = 0.005) -> float:
    """How late a 5 ms timer fired at worst on this loop until ``stop`` is set (seconds)."""
    worst = 0.0
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(interval)
        worst = max(worst, time.perf_counter() - start - interval)
    return worst


def check_plain_thread(design: str, trials: int) -> Outcome:
    """A connection used by green code is next used by a plain thread while the loop runs.

    The plain thread does what PyMongo's plain path does with the connection's socket
    object (``settimeout`` slices, ``sendall``, ``recv_into``): the GreenSocket itself in
    design (b), the stream's underlying socket (``stream.socket``) in design (a). A
    watchdog shuts the connection down after 3 s, which frees a loop thread stuck in a
    blocking ``recv``; the loop's worst timer lateness over the trial is recorded.
    """
    outcomes: dict[str, int] = {}
    stolen = closed = stalled = rescued = 0
    worst_lag = 0.0
    with tornado_log() as logged:
        for trial in range(trials):
            peer = Peer()

            @motorpatch.green
            def green_use(peer: Peer = peer) -> tuple[Any, Any]:
                peer.answer_after(0.02)  # the read waits on the loop, as a real round trip does
                if design == "b":
                    green = GreenSocket(peer.client)
                    sock_round_trip(green, 1)
                    return None, green
                stream = tornado.iostream.IOStream(peer.client)
                stream_round_trip(stream, 1, tuned=False)
                return stream, stream.socket

            async def main(peer: Peer = peer, trial: int = trial) -> tuple[str, Any, float]:
                stop = asyncio.Event()
                lag = asyncio.create_task(_max_lag(stop))
                await asyncio.sleep(0.01)
                stream, plain_obj = await green_use()
                peer.answer_after(0.02)
                outcome = await asyncio.to_thread(plain_thread_round_trip, plain_obj, 100 + trial)
                await asyncio.sleep(0.6)  # let the loop react to whatever it saw
                stop.set()
                return outcome, stream, await lag

            fired: list[bool] = []

            def watchdog(peer: Peer = peer, fired: list[bool] = fired) -> None:
                fired.append(True)
                with contextlib.suppress(OSError):
                    peer.client.shutdown(socket.SHUT_RDWR)

            timer = threading.Timer(3.0, watchdog)
            timer.start()
            try:
                outcome, stream, lag = asyncio.run(main())
            finally:
                timer.cancel()
                peer.close()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            worst_lag = max(worst_lag, lag)
            stalled += lag > 0.1
            rescued += bool(fired)
            if stream is not None:
                stolen += stream._read_buffer_size == REPLY_SIZE
                closed += stream.closed()
    summary = "plain thread: " + ", ".join(f"{k} {v}/{trials}" for k, v in outcomes.items())
    if design == "a":
        summary += (
            f"; the IOStream (still registered for reads while idle) had read the plain "
            f"thread's reply into its own buffer in {stolen}/{trials}; the stream was closed "
            f"by Tornado in {closed}/{trials}"
        )
    summary += (
        f"; loop thread stalled > 100 ms in {stalled}/{trials} (worst {worst_lag * 1000:.0f} ms)"
        f"; watchdog had to shut the connection down to free it in {rescued}/{trials}"
    )
    if logged:
        kinds = sorted(set(logged))
        summary += f"; Tornado logged {len(logged)}x: " + " | ".join(repr(k) for k in kinds)
    return outcomes.get("ok", 0) == trials and not stalled, summary


class _TracedIOStream(tornado.iostream.IOStream):
    """An IOStream that records which threads ran its I/O handler."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.handler_threads: set[str] = set()

    def _handle_events(self, fd: Any, events: int) -> None:
        self.handler_threads.add(threading.current_thread().name)
        super()._handle_events(fd, events)


def check_second_loop(design: str, first_loop_state: str) -> Outcome:
    """A connection used on loop 1 is next used by green code on loop 2 in another thread."""
    peer = Peer()
    made: dict[str, Any] = {}

    @motorpatch.green
    def green_use(request_id: int) -> float:
        peer.answer_after(0.02)
        start = time.perf_counter()
        if design == "b":
            made.setdefault("conn", GreenSocket(peer.client))
            sock_round_trip(made["conn"], request_id)
        else:
            made.setdefault("conn", _TracedIOStream(peer.client))
            stream_round_trip(made["conn"], request_id, tuned=False)
        return time.perf_counter() - start

    def on_loop_2(result: list[str]) -> None:
        async def guarded() -> float:
            return await asyncio.wait_for(green_use(2), 2.0)

        try:
            took = asyncio.run(guarded())
            result.append(f"completed in {took * 1000:.0f} ms")
        except TimeoutError:
            result.append("hung: no reply within the 2 s guard")
        except Exception as exc:
            result.append(f"{type(exc).__name__}: {exc}")

    def in_thread() -> str:
        result: list[str] = []
        thread = threading.Thread(target=on_loop_2, args=(result,), name="loop-2")
        thread.start()
        thread.join()
        return result[0]

    async def loop_1_running() -> str:
        await green_use(1)
        return await asyncio.to_thread(in_thread)

    with tornado_log() as logged:
        try:
            if first_loop_state == "running":
                outcome = asyncio.run(loop_1_running())
            else:
                asyncio.run(_green_main(green_use, 1))  # loop 1 is closed when this returns
                outcome = in_thread()
        finally:
            peer.close()
    ok = outcome.startswith("completed") and float(outcome.split()[2]) < 500
    facts = outcome + " (the reply was sent 20 ms after the request)"
    conn = made.get("conn")
    if isinstance(conn, _TracedIOStream):
        facts += (
            f"; the stream's read handler ran on thread(s) {sorted(conn.handler_threads)}"
            " (loop 1 runs on MainThread)"
        )
    if logged:
        facts += f"; Tornado logged: {' | '.join(sorted(set(logged)))}"
    return ok, facts


def run_checks(quick: bool) -> list[tuple[str, bool, str]]:
    trials = 5 if quick else 20
    checks: list[tuple[str, Callable[[], Outcome]]] = [
        (
            "1a IOStream: read slice times out (asyncio.wait_for), PyMongo reads again",
            check_timeout_cancel,
        ),
        (
            "1b IOStream: read slice times out, read kept pending (gen.with_timeout)",
            check_timeout_keep_pending,
        ),
        ("1c GreenSocket: read slice times out, PyMongo reads again", check_timeout_greensocket),
        (
            f"2a IOStream: next use from a plain thread, loop still running ({trials} trials)",
            lambda: check_plain_thread("a", trials),
        ),
        (
            f"2b GreenSocket: next use from a plain thread, loop still running ({trials} trials)",
            lambda: check_plain_thread("b", trials),
        ),
        (
            "3a IOStream: next use from a 2nd loop in another thread, loop 1 running",
            lambda: check_second_loop("a", "running"),
        ),
        (
            "3b IOStream: next use from a 2nd loop in another thread, loop 1 closed",
            lambda: check_second_loop("a", "closed"),
        ),
        (
            "3c GreenSocket: next use from a 2nd loop in another thread, loop 1 running",
            lambda: check_second_loop("b", "running"),
        ),
        (
            "3d GreenSocket: next use from a 2nd loop in another thread, loop 1 closed",
            lambda: check_second_loop("b", "closed"),
        ),
    ]
    out = []
    for title, fn in checks:
        with warnings.catch_warnings(record=True):
            ok, facts = fn()
        print(f"{'PASS' if ok else 'FAIL'}  {title}\n      observed: {facts}", flush=True)
        out.append((title, ok, facts))
    return out


# -- main ----------------------------------------------------------------------------------------
def environment() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC;"
        f" motorpatch {_revision()}",
        f"- machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, tornado {tornado.version}, greenlet "
        f"{greenlet.__version__}, uvloop {uvloop.__version__ if uvloop else 'absent'}, "
        f"PyMongo {pymongo.version} (imported, not used on the wire), motorpatch "
        f"{motorpatch.__version__} (git: see date line)",
        f"- pinning: client CPU 0, responder CPU 1: {'yes' if _can_pin() else 'no'}",
        "- load average (1/5/15 min) at start: "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (other processes were not stopped: see the min-max spread)",
    ]


def _revision() -> str:
    """The git commit the measured motorpatch code is at (and whether motorpatch/ had edits)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "motorpatch"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "at an unknown commit"
    return f"at commit {head}" + (" + uncommitted edits in motorpatch/" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run, noisy numbers")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-checks", action="store_true", help="skip the functional checks")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    motorpatch.install(blocking="ignore")
    loops = ["asyncio", "uvloop"] if uvloop is not None else ["asyncio"]
    env = [*environment(), bridge_note()]
    print("\n".join(env))
    if _can_pin():
        os.sched_setaffinity(0, {0})
    proc, port = start_responder()
    try:
        results = measure_all(port, args.quick, loops)
    finally:
        proc.terminate()
        proc.wait()
    env.append(
        "- load average (1/5/15 min) after the measurements: "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    lines = table(results)
    ratio_lines = ratios(results, loops)
    print("\n" + "\n".join(lines) + "\n\n" + "\n".join(ratio_lines) + "\n")
    checks = [] if args.no_checks else run_checks(args.quick)
    write_report(env, lines, ratio_lines, checks, args.quick)


def write_report(
    env: list[str],
    lines: list[str],
    ratio_lines: list[str],
    checks: list[tuple[str, bool, str]],
    quick: bool,
) -> None:
    mode = "smoke run: few ops, 1 repeat; numbers are noisy" if quick else "full run"
    doc = [
        "# Green socket designs: IOStream per connection vs readiness callbacks",
        "",
        "Generated by `python bench/socket_designs.py"
        + (" --quick" if quick else "")
        + f"` ({mode}). Do not edit by hand; re-run it.",
        "",
        *env,
        "",
        "Workload: 100-byte request, 16-byte header + 200-byte reply body, loopback, a",
        "canned-reply responder (uvloop protocol) in its own process. CPU = `time.process_time()`",
        "of the client process / round trips (the responder's CPU is excluded); system share =",
        "kernel part of it (`getrusage` ru_stime / (ru_utime + ru_stime)). Median of "
        + ("1 run" if quick else "5 interleaved runs")
        + " of "
        + ("2,000 (c=1) / 5,000 (c=50)" if quick else "20,000 (c=1) / 50,000 (c=50)")
        + " round trips each.",
        "",
        "- (a) `IOStream` per connection, `await_(stream.write())`, `await_(stream.read_into())`",
        "  from `@motorpatch.green` code; no read timeout handled.",
        "- (a*) IOStream tuned: `await_` only a still-pending future (a completed one is taken",
        "  at once), plus the 0.5 s slice timer PyMongo's reads need (`gen.with_timeout`) when",
        "  a read is pending.",
        "- (b) `GreenSocket` with PyMongo's `receive_data` loop (`settimeout(0.5)`, `recv_into`).",
        "- (c) the same PyMongo-shaped loop on blocking sockets in one thread, no event loop",
        "  (c=50: 50 sockets, send on all, then read all).",
        "- (d) 50 threads with a blocking socket each (reference for threaded plain PyMongo).",
        "",
        *lines,
        "",
        "Ratios of CPU per round trip:",
        "",
        *ratio_lines,
        "",
    ]
    if checks:
        doc += [
            "## Functional checks (what PyMongo needs from the socket)",
            "",
            "PASS = the design behaves as PyMongo's network layer needs. Observed, not assumed:",
            "",
        ]
        for title, ok, facts in checks:
            doc.append(f"- **{'PASS' if ok else 'FAIL'}** {title}. Observed: {facts}.")
        doc.append("")
    out = ROOT / "bench" / "socket_designs.md"
    out.write_text("\n".join(doc), encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""A bounded HTTP/1.1 load generator for the end-to-end cells (bench/worker_http.py).

``python bench/loadgen.py --port P --conns N --seconds S --warmup W --lag-seconds L``: ``N``
keep-alive connections on loopback, each sending ``GET /api/messages`` and waiting for the
whole response before the next (closed loop: at most ``N`` requests in flight). After the
warm-up it reads the server's CPU time (``/_bench/stats``), runs the measured phase
(requests/s, latency p50/p99 of each request, send to last byte), reads the CPU time again,
then runs a lag phase of the same load with the server's 1 ms ticker on. Prints one
``RESULT`` JSON line. Uses uvloop when installed, so the generator stays cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

REQUEST = b"GET /api/messages HTTP/1.1\r\nHost: bench\r\nAccept: */*\r\n\r\n"


class HttpConn(asyncio.Protocol):
    """One keep-alive connection; ``request()`` sends a GET and waits for its whole response."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.need = -1  # bytes of the whole response once the headers are in, else -1

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15:].split(b"\r\n", 1)[0]) if i >= 0 else 0
            self.need = end + 4 + length
            self.status = int(head[9:12])
        if len(buf) >= self.need and self.waiter is not None:
            del buf[: self.need]
            self.need = -1
            waiter, self.waiter = self.waiter, None
            if not waiter.done():
                waiter.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("closed"))

    async def request(self, raw: bytes = REQUEST) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def get_json(port: int, path: str) -> Any:
    """One request on its own connection (the control endpoints)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}")


async def phase(conns: list[HttpConn], seconds: float, latencies: list[float] | None) -> int:
    """Every connection loops on requests until the deadline; returns the responses received."""
    deadline = time.perf_counter() + seconds
    errors = 0

    async def loop(conn: HttpConn) -> int:
        nonlocal errors
        n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                return n
            status = await conn.request()
            if status != 200:
                errors += 1
            if latencies is not None:
                latencies.append(time.perf_counter() - t0)
            n += 1

    counts = await asyncio.gather(*(loop(c) for c in conns))
    if errors:
        raise RuntimeError(f"{errors} responses were not 200")
    return sum(counts)


def pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    return round(sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))] * 1000, 3)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(args.conns):
        _, conn = await loop.create_connection(HttpConn, "127.0.0.1", args.port)
        conns.append(conn)
    await phase(conns, args.warmup, None)
    before = await get_json(args.port, "/_bench/stats")
    lat: list[float] = []
    t0 = time.perf_counter()
    n = await phase(conns, args.seconds, lat)
    wall = time.perf_counter() - t0
    after = await get_json(args.port, "/_bench/stats")
    await get_json(args.port, "/_bench/lag/start")
    await phase(conns, args.lag_seconds, None)
    lags = await get_json(args.port, "/_bench/lag/stop")
    for c in conns:
        c.transport.close()
    lat.sort()
    cpu = after["cpu"] - before["cpu"]
    return {
        "requests": n,
        "wall_s": round(wall, 4),
        "req_s": round(n / wall, 1),
        "lat_p50_ms": pct(lat, 0.50),
        "lat_p99_ms": pct(lat, 0.99),
        "server_cpu_s": round(cpu, 4),
        "cpu_us_req": round(cpu / n * 1e6, 1) if n else None,
        "rss_peak_mb": after.get("rss_peak_mb"),
        "lag_p50_ms": lags.get("lag_p50_ms"),
        "lag_p99_ms": lags.get("lag_p99_ms"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=10)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--warmup", type=float, default=0.3)
    p.add_argument("--lag-seconds", type=float, default=0.5)
    p.add_argument("--cpu", type=int, default=-1)
    args = p.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(run(args))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

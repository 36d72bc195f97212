"""What every benchmark client process shares: arguments, workloads, metrics, the JSON result.

A client process runs one cell (client x workload x concurrency x server): ``conc`` callers
loop on the workload's operation until a deadline (after a warm-up of the same shape), and the
process prints one JSON line with its measurements. Times are measured inside the client
process: ``cpu`` is ``time.process_time()`` (all threads of the process), ``wall`` is
``perf_counter``. Loop lag comes from a 1 ms ticker on the client's own scheduler, run in a
separate phase of the same load after the measured one, so that the ticker's own wake-ups
(1000/s) are not charged to the CPU per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

TICK = 0.001  # the ticker's period (s)

# The responder picks the reply by collection name: "big*" -> 100 docs of ~1 KB, else 1 doc.
SMALL, BIG, INSERT = "small", "big", "ins"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--client", required=True)
    p.add_argument("--workload", required=True, choices=["find_one", "find", "insert"])
    p.add_argument("--conc", type=int, default=1)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--warmup", type=float, default=0.3)
    p.add_argument("--lag-seconds", type=float, default=0.5,
                   help="a second phase, with the 1 ms ticker, for the loop-lag figures")
    p.add_argument("--cpu", type=int, default=-1, help="pin this process to one CPU")
    p.add_argument("--rate", type=float, default=0.0,
                   help="open loop: offered operations/s spread over the --conc callers")
    p.add_argument("--pool", type=int, default=100,
                   help="maxPoolSize (the hand-written client's connection limit too)")
    args = p.parse_args(argv)
    pin_cpu(args.cpu)
    return args


def pin_cpu(cpu: int) -> None:
    """Pin this process to CPU ``cpu``; -1 (or an OS without affinity) leaves it free."""
    if cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def parse_worker_args(description: str, kinds: list[str]) -> argparse.Namespace:
    """An HTTP worker's options: ``--kind`` (one of ``kinds``), the MongoDB ``--port``,
    ``--cpu`` (the process is pinned here)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--kind", required=True, choices=kinds)
    p.add_argument("--port", type=int, required=True, help="the MongoDB server's port")
    p.add_argument("--cpu", type=int, default=-1, help="pin this process to one CPU")
    args = p.parse_args()
    pin_cpu(args.cpu)
    return args


async def drive(op: Any, conc: int, seconds: float) -> int:
    """``conc`` callers await ``op()`` in a loop for ``seconds``; the operations they made."""
    deadline = time.perf_counter() + seconds

    async def caller() -> int:
        n = 0
        while time.perf_counter() < deadline:
            await op()
            n += 1
        return n

    return sum(await asyncio.gather(*(caller() for _ in range(conc))))


def uri(port: int, pool: int = 100) -> str:
    # maxPoolSize 100 (PyMongo's default) unless a cell says otherwise, the same for every client.
    return f"mongodb://127.0.0.1:{port}/?directConnection=true&maxPoolSize={pool}"


# -- workloads on a sync PyMongo Database (motorpatch, sync, threads, gevent) ----------------------
def sync_op(db: Any, workload: str) -> Any:
    if workload == "find_one":
        return db[SMALL].find_one({})
    if workload == "find":
        return list(db[BIG].find({}))
    return db[INSERT].insert_one({"x": 1, "s": "payload"})


# -- the same on an async Database (AsyncMongoClient, Motor) ------------------------------------
async def async_op(db: Any, workload: str) -> Any:
    if workload == "find_one":
        return await db[SMALL].find_one({})
    if workload == "find":
        return await db[BIG].find({}).to_list(None)
    return await db[INSERT].insert_one({"x": 1, "s": "payload"})


def rss_kb(field: str = "VmRSS") -> int:
    """Resident set size (KB): current (VmRSS) or this image's peak (VmHWM, reset at exec;
    ``ru_maxrss`` is not: it keeps the parent's peak across fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class Lags:
    """Ticker lags (seconds past the due time of each 1 ms tick)."""

    samples: list[float] = field(default_factory=list)
    running: bool = True

    def stats(self) -> dict[str, float | None]:
        s = sorted(self.samples)
        if not s:
            return {"lag_p50_ms": None, "lag_p99_ms": None, "lag_max_ms": None}

        def pct(q: float) -> float:
            return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 3)

        return {"lag_p50_ms": pct(0.50), "lag_p99_ms": pct(0.99), "lag_max_ms": pct(1.0)}


async def asyncio_ticker(lags: Lags) -> None:
    import asyncio

    while lags.running:
        t0 = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.samples.append(max(0.0, time.perf_counter() - t0 - TICK))


def blocking_ticker(lags: Lags, sleep: Any = time.sleep) -> None:
    """For threads (GIL hand-off lag) and gevent (hub lag, with gevent's sleep)."""
    while lags.running:
        t0 = time.perf_counter()
        sleep(TICK)
        lags.samples.append(max(0.0, time.perf_counter() - t0 - TICK))


@dataclass
class OpenLoop:
    """The schedule of an open-loop cell and what it measured.

    Caller ``i`` of ``conc`` starts its ``k``-th operation at ``t0 + (i + k * conc) / rate``
    (or as soon as its previous one ends, if that is later), so together the callers offer
    ``rate`` operations/s whatever the client's speed. Latency is counted from the scheduled
    start, so time spent behind a late previous operation (queueing) counts. Operations
    scheduled in the warm-up are not measured; the achieved rate is the operations that
    ended inside the measured window divided by its length.
    """

    conc: int
    rate: float
    warmup: float
    seconds: float
    t0: float = 0.0
    latencies: list[float] = field(default_factory=list)
    done_in_window: int = 0
    cpu: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.t0 = time.perf_counter() + 0.05

    @property
    def window(self) -> tuple[float, float]:
        w0 = self.t0 + self.warmup
        return w0, w0 + self.seconds

    def due(self, i: int, k: int) -> float | None:
        """Caller ``i``'s ``k``-th scheduled start, or None once past the window."""
        when = self.t0 + (i + k * self.conc) / self.rate
        return when if when < self.window[1] else None

    def record(self, scheduled: float, end: float) -> None:
        w0, w1 = self.window
        if scheduled >= w0:
            self.latencies.append(end - scheduled)
        if w0 <= end < w1:
            self.done_in_window += 1

    def result(self) -> dict[str, Any]:
        s = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 3) if s else None

        cpu = self.cpu[1] - self.cpu[0] if len(self.cpu) == 2 else None
        n = self.done_in_window
        return {"offered_s": self.rate, "achieved_s": round(n / self.seconds, 1),
                "op_p50_ms": pct(0.5), "op_p99_ms": pct(0.99), "op_max_ms": pct(1.0),
                "scheduled": len(s), "cpu_us_op": round(cpu / n * 1e6, 1) if cpu and n else None}


def open_loop_sync(op: Any, plan: OpenLoop, spawn: Any, sleep: Any = time.sleep) -> None:
    """Run ``plan`` with blocking callers (threads, or gevent greenlets); ``spawn(fn, i)``
    starts one caller and returns something with ``join()``. CPU is sampled at the window's
    edges by a separate caller."""

    def caller(i: int) -> None:
        k = 0
        while (due := plan.due(i, k)) is not None:
            now = time.perf_counter()
            if due > now:
                sleep(due - now)
            op()
            plan.record(due, time.perf_counter())
            k += 1

    def sampler(_: int) -> None:
        for edge in plan.window:
            now = time.perf_counter()
            if edge > now:
                sleep(edge - now)
            plan.cpu.append(time.process_time())

    plan.start()
    workers = [spawn(sampler, -1)] + [spawn(caller, i) for i in range(plan.conc)]
    for w in workers:
        w.join()


class Meter:
    """CPU, wall and memory around the measured phase; each operation's latency in it
    (``latencies``, seconds) and each caller's operation count (``per_caller``)."""

    def __init__(self) -> None:
        self.rss_base = rss_kb()
        self.latencies: list[float] = []
        self.per_caller: list[int] = []

    def start(self) -> None:
        gc.collect()
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def stop(self) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0


def emit(args: argparse.Namespace, meter: Meter, ops: int, lags: Lags | None, **extra: Any) -> None:
    peak = rss_kb("VmHWM")
    result: dict[str, Any] = {
        "client": args.client,
        "workload": args.workload,
        "conc": args.conc,
        "ops": ops,
        "wall_s": round(meter.wall, 4),
        "cpu_s": round(meter.cpu, 4),
        "ops_s": round(ops / meter.wall, 1) if meter.wall else 0.0,
        "cpu_us_op": round(meter.cpu / ops * 1e6, 1) if ops else None,
        "rss_base_mb": round(meter.rss_base / 1024, 1),
        "rss_peak_mb": round(peak / 1024, 1),
        "rss_per_call_kb": round((peak - meter.rss_base) / args.conc, 1),
        "pool": args.pool,
        "python": sys.version.split()[0],
    }
    lat = sorted(meter.latencies)
    if lat:
        result["op_p50_ms"] = round(lat[int(0.5 * len(lat))] * 1000, 3)
        result["op_p99_ms"] = round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, 3)
    if meter.per_caller:  # a starved caller shows as 0 (or far below the mean)
        result["caller_ops_min"] = min(meter.per_caller)
        result["caller_ops_mean"] = round(sum(meter.per_caller) / len(meter.per_caller), 1)
    result.update(lags.stats() if lags else Lags().stats())
    result.update(extra)
    print("RESULT " + json.dumps(result), flush=True)


def emit_open(args: argparse.Namespace, plan: OpenLoop, lags: Lags, **extra: Any) -> None:
    """The RESULT line of an open-loop cell (the ticker ran during the whole cell)."""
    result: dict[str, Any] = {"client": args.client, "workload": args.workload,
                              "conc": args.conc, "rate": args.rate, **plan.result(),
                              "rss_peak_mb": round(rss_kb("VmHWM") / 1024, 1),
                              "python": sys.version.split()[0]}
    result.update(lags.stats())
    result.update(extra)
    print("RESULT " + json.dumps(result), flush=True)

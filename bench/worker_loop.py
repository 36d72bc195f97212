"""One benchmark cell for an event-loop client, in its own process; prints a RESULT line.

Clients: ``mp-asyncio``, ``mp-uvloop``, ``mp-tornado`` (motorpatch: one ``@green`` call per
operation, as a request handler makes), ``pymongo-async`` (PyMongo's AsyncMongoClient),
``motor`` (Motor 3.7), ``raw-asyncio`` (bench/rawclient.py). Each runs ``conc`` callers that
loop until the deadline, with a 1 ms ticker task measuring the loop's lag.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Lags,
    Meter,
    OpenLoop,
    async_op,
    asyncio_ticker,
    emit,
    emit_open,
    parse_args,
    sync_op,
    uri,
)

Op = Callable[[], Awaitable[Any]]


async def drive(op: Op, conc: int, seconds: float, lags: Lags | None,
                meter: Meter | None = None) -> int:
    """``conc`` callers looping on ``op`` for ``seconds``; returns the operations done.
    With ``meter``, records each operation's latency and each caller's count in it."""
    deadline = time.perf_counter() + seconds
    clock = time.perf_counter
    record = meter.latencies.append if meter else None

    async def caller() -> int:
        n = 0
        t0 = clock()
        while t0 < deadline:
            await op()
            t1 = clock()
            if record:
                record(t1 - t0)
            t0 = t1
            n += 1
        return n

    ticker = asyncio.ensure_future(asyncio_ticker(lags)) if lags else None
    try:
        counts = await asyncio.gather(*(caller() for _ in range(conc)))
    finally:
        if lags and ticker:
            lags.running = False
            await ticker
    if meter:
        meter.per_caller = list(counts)
    return sum(counts)


def make_client(args: Any) -> tuple[Op, Callable[[], Awaitable[None]], dict[str, str]]:
    """(the operation, an async close, versions) for ``args.client``."""
    name, workload = args.client, args.workload
    if name.startswith("mp-"):
        import pymongo

        import motorpatch

        motorpatch.install()
        client: Any = pymongo.MongoClient(uri(args.port, args.pool))
        db = client.bench

        @motorpatch.green
        def green_op() -> Any:
            return sync_op(db, workload)

        async def close() -> None:
            await motorpatch.green(client.close)()

        return green_op, close, {"pymongo": pymongo.version}
    if name == "pymongo-async":
        import pymongo

        client = pymongo.AsyncMongoClient(uri(args.port, args.pool))
        db = client.bench

        async def close_async() -> None:
            await client.close()

        return lambda: async_op(db, workload), close_async, {"pymongo": pymongo.version}
    if name == "motor":
        import motor
        import motor.motor_asyncio

        client = motor.motor_asyncio.AsyncIOMotorClient(uri(args.port, args.pool))
        db = client.bench

        async def close_motor() -> None:
            client.close()

        return lambda: async_op(db, workload), close_motor, {"motor": motor.version}
    if name == "raw-asyncio":
        from rawclient import RawClient, raw_op

        raw = RawClient(args.port, max_pool=args.pool)

        async def close_raw() -> None:
            raw.close()

        return lambda: raw_op(raw, workload), close_raw, {}
    raise SystemExit(f"unknown client {name}")


async def open_loop(op: Op, plan: OpenLoop) -> None:
    """Run ``plan`` (see common.OpenLoop) with ``plan.conc`` coroutines."""

    async def caller(i: int) -> None:
        k = 0
        while (due := plan.due(i, k)) is not None:
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            await op()
            plan.record(due, time.perf_counter())
            k += 1

    async def sampler() -> None:
        for edge in plan.window:
            now = time.perf_counter()
            if edge > now:
                await asyncio.sleep(edge - now)
            plan.cpu.append(time.process_time())

    plan.start()
    await asyncio.gather(sampler(), *(caller(i) for i in range(plan.conc)))


async def cell(args: Any) -> None:
    meter = Meter()
    op, close, versions = make_client(args)
    if args.rate:
        await op()
        plan = OpenLoop(args.conc, args.rate, args.warmup, args.seconds)
        lags = Lags()
        ticker = asyncio.ensure_future(asyncio_ticker(lags))
        await open_loop(op, plan)
        lags.running = False
        await ticker
        await close()
        emit_open(args, plan, lags, loop=type(asyncio.get_running_loop()).__module__, **versions)
        return
    await op()  # connect, select the server
    meter.rss_base = __import__("common").rss_kb()
    await drive(op, args.conc, args.warmup, None)
    meter.start()
    ops = await drive(op, args.conc, args.seconds, None, meter)
    meter.stop()
    lags = Lags()
    await drive(op, args.conc, args.lag_seconds, lags)
    await close()
    emit(args, meter, ops, lags, loop=type(asyncio.get_running_loop()).__module__, **versions)


def main() -> None:
    args = parse_args()
    if args.client == "mp-uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(cell(args))
    elif args.client == "mp-tornado":
        import tornado.ioloop

        tornado.ioloop.IOLoop.current().run_sync(lambda: cell(args))
    else:
        asyncio.run(cell(args))


if __name__ == "__main__":
    main()

"""One benchmark cell for a synchronous PyMongo client, in its own process; prints a RESULT line.

Clients: ``sync`` (one thread, no loop: the floor of PyMongo's own CPU per operation; run at
concurrency 1 only), ``threads`` (``conc`` threads sharing one MongoClient; a 1 ms ticker
thread measures GIL hand-off lag), ``gevent`` (``gevent.monkey.patch_all()`` before anything
else is imported, ``conc`` greenlets; a ticker greenlet measures the hub's lag).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "gevent" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Lags,
    Meter,
    OpenLoop,
    blocking_ticker,
    emit,
    emit_open,
    open_loop_sync,
    parse_args,
    rss_kb,
    sync_op,
    uri,
)


def loop_until(db: Any, workload: str, deadline: float, counts: list[int], i: int, *,
               latencies: list[float] | None = None) -> None:
    n = 0
    clock = time.perf_counter
    record = latencies.append if latencies is not None else None
    t0 = clock()
    while t0 < deadline:
        sync_op(db, workload)
        t1 = clock()
        if record:
            record(t1 - t0)
        t0 = t1
        n += 1
    counts[i] = n


def run_threads(db: Any, workload: str, conc: int, seconds: float, lags: Lags | None, *,
                meter: Meter | None = None) -> int:
    counts = [0] * conc
    deadline = time.perf_counter() + seconds
    lat = meter.latencies if meter else None
    threads = [
        threading.Thread(target=loop_until, args=(db, workload, deadline, counts, i),
                         kwargs={"latencies": lat})
        for i in range(conc)
    ]
    ticker = threading.Thread(target=blocking_ticker, args=(lags,)) if lags else None
    if ticker:
        ticker.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if lags and ticker:
        lags.running = False
        ticker.join()
    if meter:
        meter.per_caller = list(counts)
    return sum(counts)


def run_gevent(db: Any, workload: str, conc: int, seconds: float, lags: Lags | None, *,
               meter: Meter | None = None) -> int:
    import gevent

    counts = [0] * conc
    deadline = time.perf_counter() + seconds
    lat = meter.latencies if meter else None
    ticker = gevent.spawn(blocking_ticker, lags, gevent.sleep) if lags else None
    gevent.joinall([gevent.spawn(loop_until, db, workload, deadline, counts, i, latencies=lat)
                    for i in range(conc)])
    if lags and ticker:
        lags.running = False
        ticker.join()
    if meter:
        meter.per_caller = list(counts)
    return sum(counts)


def run_open(args: Any, db: Any, versions: dict[str, str]) -> None:
    """Open loop (common.OpenLoop) with ``conc`` threads or greenlets; ticker throughout."""
    plan = OpenLoop(args.conc, args.rate, args.warmup, args.seconds)
    lags = Lags()
    if args.client == "gevent":
        import gevent

        spawn, sleep = gevent.spawn, gevent.sleep
        ticker: Any = gevent.spawn(blocking_ticker, lags, gevent.sleep)
    else:
        threading.stack_size(256 * 1024)

        def spawn(fn: Any, i: int) -> threading.Thread:
            t = threading.Thread(target=fn, args=(i,))
            t.start()
            return t

        sleep = time.sleep
        ticker = spawn(lambda _: blocking_ticker(lags), -1)
    open_loop_sync(lambda: sync_op(db, args.workload), plan, spawn, sleep)
    lags.running = False
    ticker.join()
    emit_open(args, plan, lags, **versions)


def main() -> None:
    args = parse_args()
    import pymongo

    versions = {"pymongo": pymongo.version}
    if args.client == "gevent":
        import gevent

        versions["gevent"] = gevent.__version__
        run = run_gevent
    elif args.client in ("sync", "threads"):
        run = run_threads
    else:
        raise SystemExit(f"unknown client {args.client}")
    meter = Meter()
    client: Any = pymongo.MongoClient(uri(args.port, args.pool))
    db = client.bench
    sync_op(db, args.workload)
    if args.rate:
        run_open(args, db, versions)
        client.close()
        return
    meter.rss_base = rss_kb()
    if args.client == "sync":
        args.conc = 1
        counts = [0]
        loop_until(db, args.workload, time.perf_counter() + args.warmup, counts, 0)
        meter.start()
        loop_until(db, args.workload, time.perf_counter() + args.seconds, counts, 0,
                   latencies=meter.latencies)
        meter.stop()
        emit(args, meter, counts[0], None, **versions)
    else:
        run(db, args.workload, args.conc, args.warmup, None)
        meter.start()
        ops = run(db, args.workload, args.conc, args.seconds, None, meter=meter)
        meter.stop()
        lags = Lags()
        run(db, args.workload, args.conc, args.lag_seconds, lags)
        emit(args, meter, ops, lags, **versions)
    client.close()


if __name__ == "__main__":
    main()

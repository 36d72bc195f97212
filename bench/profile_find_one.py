"""Where a green ``find_one`` spends its time: a cProfile of motorpatch, itemised per operation.

    .venv/bin/python bench/profile_find_one.py            # every loop, c=1/100/1000 (about 1 min)
    .venv/bin/python bench/profile_find_one.py --quick    # asyncio only, short windows (~10 s)
    .venv/bin/python bench/profile_find_one.py --loops asyncio --cases 1000x1000 --seconds 3
    .venv/bin/python bench/profile_find_one.py --no-profile --repeat 3 \
        --variants before=/tmp/mp-before,after=.    # side by side: CPU/op and ops/s ratios

``--variants name=DIR,...`` runs each case with the motorpatch package found in each DIR
(``git archive COMMIT motorpatch | tar -x -C DIR`` makes one), interleaved ``--repeat`` times,
and prints every figure and the ratio of medians against the first variant.

Each case (loop x callers x maxPoolSize) runs in a fresh process against the canned-reply
responder (bench/responder.py, its own process; 0 ms replies for c <= 100, 10 ms for c=1000,
as in bench/run.py's cells). The process first measures CPU per operation without the
profiler, then runs the same load under cProfile and sorts every function's own time (tottime)
into the buckets the hot path is made of, per operation. cProfile's overhead inflates the
absolute figures (about 2x on this path): read the buckets as shares and the call counts as
exact; the unprofiled ``cpu us/op`` is the real cost.

The profiled window starts right after the first operation, so at ``maxPoolSize=1000`` it
includes the pool's growth (2 connections at a time, PyMongo's maxConnecting), as the
benchmark cells do.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import drive, pin_cpu, uri  # noqa: E402  (bench/ is on the path from here on)

# (bucket, test on (file, function name)); the first bucket that matches takes the function.
BUCKETS: list[tuple[str, Any]] = [
    ("fairness bookkeeping", lambda f, n: f.endswith("_fairness.py")),
    ("stats counters", lambda f, n: f.endswith(("_stats.py", "_state.py"))),
    ("_green_loop checks", lambda f, n: n in {"_green_loop", "green_loop"}),
    ("pool checkout patch", lambda f, n: f.endswith(("patches/pool.py", "_condition.py"))),
    ("patch gates, other patches", lambda f, n: "motorpatch/patches" in f),
    ("wrapt wrappers", lambda f, n: "wrapt" in f),
    ("reader registration", lambda f, n: n in {
        "add_reader", "remove_reader", "_add_reader", "_remove_reader", "add_writer",
        "remove_writer", "_add_writer", "_remove_writer", "register", "unregister", "modify",
        "_ensure_fd_no_transport", "<method 'register' of 'select.epoll' objects>",
        "<method 'unregister' of 'select.epoll' objects>",
        "<method 'modify' of 'select.epoll' objects>"}
        or (f.endswith("selectors.py") and n in {"get_key", "_fileobj_lookup", "__getitem__",
                                                 "_fileobj_to_fd"})),
    ("timers", lambda f, n: n in {"call_later", "call_at", "cancel", "_timer_handle_cancelled",
                                  "<built-in method _heapq.heappush>",
                                  "<built-in method _heapq.heappop>"}
        or (f.endswith("events.py") and n in {"__init__", "__lt__", "__eq__"})),
    ("loop iteration (select, callbacks)", lambda f, n: n in {
        "_run_once", "select", "_run", "<method 'poll' of 'select.epoll' objects>",
        "_process_events", "_add_callback", "run_forever", "time", "call_soon",
        "_call_soon", "call_soon_threadsafe", "_write_to_self", "_check_closed",
        "<method 'run' of '_contextvars.Context' objects>", "<built-in method time.monotonic>",
        "<method 'popleft' of 'collections.deque' objects>",
        "<method 'append' of 'collections.deque' objects>"}
        or "tornado" in f or "uvloop" in f),
    ("greenlet switches", lambda f, n: "greenlet" in n and ("switch" in n or "throw" in n)),
    ("coroutine/future per call", lambda f, n: f.endswith(("_bridge.py", "_green.py",
                                                                   "_greenlets.py"))
        or n in {"create_future", "set_result", "__step", "__wakeup", "_wakeup", "__await__",
                 "__step_run_and_handle_result", "gather", "_done_callback", "ensure_future",
                 "create_task", "<built-in method _asyncio.current_task>"}
        or "Task" in n or "Future" in n),
    ("parking and wakers", lambda f, n: f.endswith("_parking.py")),
    ("socket shim (recv/send/wait)", lambda f, n: "socket_shim" in f),
    ("socket syscalls", lambda f, n: "socket" in n and n.startswith("<method")),
    ("pymongo (its own code)", lambda f, n: "pymongo" in f or "bson" in f),
    ("bench driver", lambda f, n: f.endswith("profile_find_one.py")),
]
# Calls counted per operation (exact, from cProfile's call counts).
COUNTED = {
    "loop iterations": lambda f, n: n == "_run_once",
    "greenlet switches": lambda f, n: "greenlet" in n and "switch" in n,
    "add_reader": lambda f, n: n == "add_reader" or n.startswith("<method 'add_reader'"),
    "call_later": lambda f, n: n == "call_later" or n.startswith("<method 'call_later'"),
    "create_future": lambda f, n: n == "create_future"
    or n.startswith("<method 'create_future'"),
    "_green_loop": lambda f, n: n in {"_green_loop", "green_loop"},
    "yields (_yield_now)": lambda f, n: n in {"_yield_now", "yield_now"},
    "pool/condition waits": lambda f, n: n == "green_cond_wait",
    "slice deferrals": lambda f, n: n in {"_wait_for_next_slice", "wait_for_next_slice"},
    "connections made": lambda f, n: n in {"green_configured_socket_interface",
                                           "green_configured_socket"},
}


def bucket_of(file: str, name: str) -> str:
    for label, test in BUCKETS:
        if test(file, name):
            return label
    return "other (stdlib, builtins)"


async def _case(args: argparse.Namespace) -> dict[str, Any]:
    import pymongo

    import motorpatch

    motorpatch.install()
    client: Any = pymongo.MongoClient(uri(args.port, args.pool))
    coll = client.bench.small

    @motorpatch.green
    def find_one() -> Any:
        return coll.find_one({})

    await find_one()
    await drive(find_one, args.conc, args.warmup)  # same shape as bench/run.py's warm-up
    deferrals0 = motorpatch.stats()["budget"]["deferrals"]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    plain_ops = await drive(find_one, args.conc, args.seconds)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    deferrals = (motorpatch.stats()["budget"]["deferrals"] - deferrals0) / max(plain_ops, 1)
    pool = client._topology._servers[next(iter(client._topology._servers))].pool
    conns_before = len(pool.conns) + pool.active_sockets
    if args.no_profile:
        await motorpatch.green(client.close)()
        motorpatch.uninstall()
        return {"loop": args.loop, "conc": args.conc, "pool": args.pool,
                "delay_ms": args.delay_ms, "ops_s": round(plain_ops / (wall1 - wall0)),
                "cpu_us_op": round((cpu1 - cpu0) / max(plain_ops, 1) * 1e6, 1),
                "connections": conns_before, "motorpatch": motorpatch.__file__,
                "deferrals_per_op": round(deferrals, 3)}
    prof = cProfile.Profile(time.thread_time)  # CPU time of the loop's thread, not waits
    prof.enable()
    profiled_ops = await drive(find_one, args.conc, args.seconds)
    prof.disable()
    await motorpatch.green(client.close)()
    motorpatch.uninstall()
    st = pstats.Stats(prof)
    buckets: dict[str, float] = {}
    counts = dict.fromkeys(COUNTED, 0)
    top: list[tuple[float, str]] = []
    for (file, _line, name), (_cc, nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        label = bucket_of(file, name)
        buckets[label] = buckets.get(label, 0.0) + tt
        for key, test in COUNTED.items():
            if test(file, name):
                counts[key] += nc
        top.append((tt, f"{Path(file).name}:{name}"))
    top.sort(reverse=True)
    n = max(profiled_ops, 1)
    return {
        "loop": args.loop, "conc": args.conc, "pool": args.pool, "delay_ms": args.delay_ms,
        "motorpatch": motorpatch.__file__,
        "ops_s": round(plain_ops / (wall1 - wall0)),
        "cpu_us_op": round((cpu1 - cpu0) / max(plain_ops, 1) * 1e6, 1),
        "profiled_ops": profiled_ops, "deferrals_per_op": round(deferrals, 3),
        "connections": conns_before,
        "buckets_us_op": {k: round(v / n * 1e6, 2) for k, v in
                          sorted(buckets.items(), key=lambda kv: -kv[1])},
        "counts_per_op": {k: round(v / n, 3) for k, v in counts.items()},
        "top": [(round(t / n * 1e6, 2), where) for t, where in top[:12]],
    }


def child(args: argparse.Namespace) -> None:
    if args.src:
        sys.path.insert(0, str(Path(args.src).resolve()))
    pin_cpu(args.cpu)
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(_case(args))
    elif args.loop == "tornado":
        import tornado.ioloop

        result = tornado.ioloop.IOLoop.current().run_sync(lambda: _case(args))
    else:
        result = asyncio.run(_case(args))
    print("RESULT " + json.dumps(result), flush=True)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        lines.append(f"\n### {r['loop']}, c={r['conc']}, maxPoolSize={r['pool']}, "
                     f"{r['delay_ms']} ms replies\n")
        lines.append(f"unprofiled: {r['ops_s']} ops/s, **{r['cpu_us_op']} us CPU/op**, "
                     f"{r['deferrals_per_op']} fairness deferrals/op; "
                     f"profiled ops: {r['profiled_ops']}; connections: {r['connections']}\n")
        lines.append("| bucket (cProfile own time) | us/op |\n|---|---|")
        lines += [f"| {k} | {v} |" for k, v in r["buckets_us_op"].items()]
        lines.append("\n| per operation | calls |\n|---|---|")
        lines += [f"| {k} | {v} |" for k, v in r["counts_per_op"].items()]
        lines.append("\nheaviest functions (us/op): " +
                     ", ".join(f"{w} {t}" for t, w in r["top"][:8]))
    return "\n".join(lines)


def _run_child(args: argparse.Namespace, case: tuple[str, int, int, str], seconds: float,
               responders: dict[int, Any]) -> dict[str, Any] | None:
    loop, conc, pool, src = case
    from run import PINNED

    delay = 10 if conc >= 1000 else 0
    cmd = [sys.executable, __file__, "--child", "--loop", loop, "--conc", str(conc),
           "--pool", str(pool), "--port", str(responders[delay][1]), "--delay-ms", str(delay),
           "--seconds", str(seconds), "--warmup", "0.1" if args.quick else "0.3",
           "--cpu", "0" if PINNED else "-1", "--src", src]
    if args.no_profile:
        cmd.append("--no-profile")
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        print(f"{loop} c={conc} pool={pool} {src}: failed\n{out.stderr}", file=sys.stderr)
        return None
    return json.loads(line[0][7:])  # type: ignore[no-any-return]


def _print_line(r: dict[str, Any]) -> None:
    text = (f"{r['variant']:10} {r['loop']:8} c={r['conc']:<5} pool={r['pool']:<5} "
            f"{r['ops_s']:>6} ops/s {r['cpu_us_op']:>6} us/op "
            f"deferrals/op {r.get('deferrals_per_op')}")
    c = r.get("counts_per_op")
    if c:
        text += (f"  loop it/op {c['loop iterations']:<6} switches/op "
                 f"{c['greenlet switches']:<6} yields/op {c['yields (_yield_now)']:<6} "
                 f"pool waits/op {c['pool/condition waits']}")
    print(text, flush=True)


def side_by_side(results: list[dict[str, Any]], names: list[str]) -> str:
    """Every run's figures per case and variant, and medians' ratios against the first."""
    from statistics import median

    lines = ["\n| loop | c | pool | variant | ops/s (runs) | CPU us/op (runs) | ops/s ratio |"
             " CPU ratio |", "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["loop"], r["conc"], r["pool"]) for r in results},
                  key=lambda k: (k[0], k[1], k[2]))
    for key in keys:
        base = None
        for name in names:
            rs = [r for r in results if (r["loop"], r["conc"], r["pool"]) == key
                  and r["variant"] == name]
            if not rs:
                continue
            ops = median(r["ops_s"] for r in rs)
            cpu = median(r["cpu_us_op"] for r in rs)
            if base is None:
                base = (ops, cpu)
            lines.append(
                f"| {key[0]} | {key[1]} | {key[2]} | {name} | "
                f"{', '.join(str(r['ops_s']) for r in rs)} | "
                f"{', '.join(str(r['cpu_us_op']) for r in rs)} | "
                f"{ops / base[0]:.2f} | {cpu / base[1]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="asyncio only, 0.5 s windows")
    p.add_argument("--loops", default="asyncio,uvloop,tornado")
    p.add_argument("--cases", default="1x100,100x100,1000x100,1000x1000",
                   help="callers x maxPoolSize, comma-separated")
    p.add_argument("--seconds", type=float, default=0.0, help="each window (default 2, quick 0.5)")
    p.add_argument("--out", help="also write the markdown report here")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--no-profile", action="store_true", help="CPU/op and ops/s only")
    p.add_argument("--repeat", type=int, default=1, help="interleaved runs of every case")
    p.add_argument("--variants", default="",
                   help="name=DIR,...: the motorpatch package of each DIR, side by side")
    # child-process options
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("--conc", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--pool", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--delay-ms", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=float, default=0.3, help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--src", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    from run import start_responder

    seconds = args.seconds or (0.5 if args.quick else 2.0)
    loops = ["asyncio"] if args.quick else args.loops.split(",")
    cases = [tuple(int(x) for x in c.split("x")) for c in args.cases.split(",")]
    variants = [v.split("=", 1) for v in args.variants.split(",")] if args.variants else [
        ["current", ""]]
    responders = {d: start_responder(d) for d in (0, 10)}
    results = []
    try:
        for rep in range(args.repeat):
            for loop in loops:
                for conc, pool in cases:
                    for name, src in variants:
                        r = _run_child(args, (loop, conc, pool, src), seconds, responders)
                        if r is None:
                            continue
                        r["variant"], r["rep"] = name, rep
                        results.append(r)
                        _print_line(r)
    finally:
        for proc, _ in responders.values():
            if proc.stdin:
                proc.stdin.close()
            proc.wait(5)
    if len(variants) > 1 or args.repeat > 1:
        print(side_by_side(results, [name for name, _ in variants]))
    if args.no_profile:
        return
    report = markdown(results)
    if args.out:
        Path(args.out).write_text("# find_one profile\n" + report + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.out:
        print(report)


if __name__ == "__main__":
    main()

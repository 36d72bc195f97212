"""Run the client benchmark matrix and write bench/RESULTS.md (+ PNG plots, bench/results.json).

    .venv/bin/python bench/run.py            # full mode (about 9 minutes)
    .venv/bin/python bench/run.py --quick    # smoke test (well under a minute), asserts nothing
    .venv/bin/python bench/run.py --frameworks   # FastAPI end to end only: RESULTS-frameworks.md

Every cell (client x workload x concurrency x server) runs in a fresh client process
(bench/worker_loop.py or bench/worker_sync.py), so no patch or warm state leaks between cells.
The canned-reply responder (bench/responder.py) runs once per delay in its own process;
nx-27017 is started for the real-server find_one cells. With two or more CPUs the client is
pinned to CPU 0 and the servers to CPU 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
import report_frameworks  # noqa: E402

LOOP_CLIENTS = ["mp-asyncio", "mp-uvloop", "mp-tornado", "pymongo-async", "motor", "raw-asyncio"]
SYNC_CLIENTS = ["sync", "threads", "gevent"]
ALL_CLIENTS = ["sync", "threads", "gevent", *LOOP_CLIENTS]
WORKLOADS = ["find_one", "find", "insert"]
HTTP_KINDS = ["mp", "blocking", "executor", "pymongo-async", "motor"]
OPEN_RATES = (1000, 2000)  # open loop: offered find_one/s over OPEN_CALLERS callers, 10 ms delay
OPEN_CALLERS = 1000
# --frameworks: FastAPI under uvicorn (bench/worker_fastapi.py), 10 ms replies, keep-alive conns
FASTAPI_KINDS = ["green", "def", "pymongo-async", "motor"]
FASTAPI_CONNS = (100, 1000)
POOLS_AT_1000 = (100, 1000)  # maxPoolSize of the c=1000 find_one cells (100 elsewhere)
PINNED = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def plan(quick: bool, clients: list[str], frameworks: bool = False) -> list[dict[str, Any]]:
    """The cells to run: dicts with mode ('closed', 'open', 'http', 'fastapi'), server
    ('delay0', 'delay10', 'nx'), client (for 'http' and 'fastapi': the server kind),
    workload, conc (for 'http' and 'fastapi': the load generator's connections), rate
    ('open': offered operations/s)."""
    cells: list[dict[str, Any]] = []

    def add_fastapi(server: str, kind: str, conns: int) -> None:
        cells.append({"mode": "fastapi", "server": server, "client": kind,
                      "workload": "http", "conc": conns})

    if frameworks:
        for conns in (20,) if quick else FASTAPI_CONNS:
            for kind in FASTAPI_KINDS:
                add_fastapi("delay10", kind, conns)
        return cells

    def add(server: str, client: str, workload: str, conc: int, pool: int = 100) -> None:
        if client in clients and not (client == "sync" and conc != 1):
            cells.append({"mode": "closed", "server": server, "client": client,
                          "workload": workload, "conc": conc, "pool": pool})

    def add_open(client: str, rate: int, conc: int) -> None:
        if client in clients:
            cells.append({"mode": "open", "server": "delay10", "client": client,
                          "workload": "find_one", "conc": conc, "rate": rate})

    def add_http(server: str, kind: str, conns: int) -> None:
        cells.append({"mode": "http", "server": server, "client": kind, "workload": "http",
                      "conc": conns})

    if quick:
        for client in ["sync", "mp-asyncio", "raw-asyncio", "pymongo-async"]:
            for conc in (1, 10):
                add("delay0", client, "find_one", conc)
        add("delay0", "mp-asyncio", "find", 10)
        add("delay0", "mp-asyncio", "insert", 10)
        add("delay10", "mp-asyncio", "find_one", 10)
        add("delay10", "mp-asyncio", "find_one", 50, pool=50)
        add("nx", "mp-asyncio", "find_one", 1)
        add_open("mp-asyncio", 200, 20)
        add_http("delay0", "mp", 4)
        add_fastapi("delay0", "green", 4)
        return cells
    for server in ("delay0", "delay10"):
        for workload in WORKLOADS:
            for conc in (1, 10, 100):
                for client in ALL_CLIENTS:
                    add(server, client, workload, conc)
    for server in ("delay0", "delay10"):  # 1,000 callers: queueing for 100, or one each
        for pool in POOLS_AT_1000:
            for client in ALL_CLIENTS:
                add(server, client, "find_one", 1000, pool)
    for conc in (1, 10, 100):
        for client in ALL_CLIENTS:
            add("nx", client, "find_one", conc)
    for rate in OPEN_RATES:
        for client in ALL_CLIENTS:
            if client != "sync":
                add_open(client, rate, OPEN_CALLERS)
    for server in ("delay0", "delay10"):
        for conns in (10, 100):
            for kind in HTTP_KINDS:
                if kind != "motor" or "motor" in clients:
                    add_http(server, kind, conns)
    return cells


def start_responder(delay_ms: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "responder.py"), "--delay-ms", str(delay_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    if PINNED:
        os.sched_setaffinity(proc.pid, {1})
    return proc, port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nx(workdir: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """nx-27017 on a free loopback port, seeded with bench.small (1 doc) and bench.big."""
    exe = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
    if not Path(exe).exists():
        return None
    import pymongo

    port = free_port()
    proc = subprocess.Popen(
        [exe, "--db", "memory", "--host", "127.0.0.1", "-p", str(port),
         "--log-file", str(workdir / "nx.log"), "--pid-file", str(workdir / "nx.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if PINNED:
        os.sched_setaffinity(proc.pid, {1})
    client: Any = pymongo.MongoClient(port=port, serverSelectionTimeoutMS=200)
    for _ in range(100):
        try:
            client.admin.command("ping")
            break
        except pymongo.errors.PyMongoError:
            time.sleep(0.1)
    else:
        proc.terminate()
        return None
    client.bench.small.insert_one({"_id": 1, "name": "ada", "age": 36, "tags": ["a", "b"]})
    client.bench.big.insert_many([{"_id": i, "pad": "x" * 1000, "n": i} for i in range(100)])
    client.close()
    return proc, port


def run_http(cell: dict[str, Any], port: int, seconds: float, warmup: float,
             lag: float) -> tuple[str, str]:
    """An end-to-end cell: bench/worker_http.py (or worker_fastapi.py) on CPU 0, driven by
    bench/loadgen.py (CPU 1)."""
    worker = "worker_fastapi.py" if cell["mode"] == "fastapi" else "worker_http.py"
    server = subprocess.Popen(
        [sys.executable, str(HERE / worker), "--kind", cell["client"],
         "--port", str(port), *(["--cpu", "0"] if PINNED else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.strip().isdigit():
            return "", "server did not start: " + (server.communicate(timeout=10)[1] or "")
        proc = subprocess.run(
            [sys.executable, str(HERE / "loadgen.py"), "--port", line.strip(),
             "--conns", str(cell["conc"]), "--seconds", str(seconds), "--warmup", str(warmup),
             "--lag-seconds", str(lag), *(["--cpu", "1"] if PINNED else [])],
            check=False, capture_output=True, text=True, timeout=60 + 5 * seconds,
        )
        return proc.stdout, proc.stderr
    finally:
        server.communicate(timeout=15)  # closes its stdin: it stops


def run_cell(cell: dict[str, Any], port: int, seconds: float, warmup: float,
             lag: float) -> dict[str, Any]:
    worker = "worker_sync.py" if cell["client"] in SYNC_CLIENTS else "worker_loop.py"
    cmd = [sys.executable, str(HERE / worker), "--client", cell["client"],
           "--workload", cell["workload"], "--conc", str(cell["conc"]), "--port", str(port),
           "--seconds", str(seconds), "--warmup", str(warmup), "--lag-seconds", str(lag),
           "--pool", str(cell.get("pool", 100))]
    if cell["mode"] == "open":
        # a caller's period is conc / rate: warm up one whole period so all callers are going
        cmd += ["--rate", str(cell["rate"])]
        cmd[cmd.index("--warmup") + 1] = str(max(warmup, cell["conc"] / cell["rate"]))
    if PINNED:
        cmd += ["--cpu", "0"]
    t0 = time.perf_counter()
    try:
        if cell["mode"] in ("http", "fastapi"):
            out, err = run_http(cell, port, seconds, warmup, lag)
        else:
            proc = subprocess.run(
                cmd, check=False, capture_output=True, text=True, timeout=60 + 5 * seconds
            )
            out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        out, err = str(exc.stdout or ""), "timeout"
    result: dict[str, Any] = dict(cell)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[7:]))
            result["conc"] = cell["conc"]
            result["client"] = cell["client"]
            break
    else:
        result["error"] = (err.strip().splitlines() or ["no output"])[-1][:200]
    result["cell_s"] = round(time.perf_counter() - t0, 2)
    return result


def status_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return str(r["error"])
    if r["mode"] in ("http", "fastapi"):
        return f"{r['req_s']:>9.0f} req/s {r['cpu_us_req']:>7} us/req p99 {r['lat_p99_ms']} ms"
    if r["mode"] == "open":
        return (f"{r['achieved_s']:>6.0f}/{r['rate']} ops/s p50 {r['op_p50_ms']} "
                f"p99 {r['op_p99_ms']} ms lag p99 {r['lag_p99_ms']} ms")
    return (f"{r['ops_s']:>9.0f} ops/s {r['cpu_us_op']:>7} us/op "
            f"p99 {r.get('op_p99_ms')} ms lag p99 {r.get('lag_p99_ms')} ms")


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from repeated runs of a cell: the median of each numeric field."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    out = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, float | int) and not isinstance(value, bool) \
                and key not in {"conc", "pool"}:
            vals = sorted(r[key] for r in ok if isinstance(r.get(key), float | int))
            mid = len(vals) // 2
            out[key] = vals[mid] if len(vals) % 2 else round((vals[mid - 1] + vals[mid]) / 2, 3)
    out["runs"] = len(ok)
    if "ops_s" in out:
        spread = sorted(r["ops_s"] for r in ok)
        out["ops_s_range"] = [spread[0], spread[-1]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: few cells, short runs")
    parser.add_argument("--seconds", type=float, help="measured seconds per cell")
    parser.add_argument("--clients", default=",".join(ALL_CLIENTS))
    parser.add_argument("--out", help="default bench/RESULTS.md (quick: bench/RESULTS-quick.md)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--frameworks", action="store_true",
                        help="only the FastAPI end-to-end cells (default out: "
                        "bench/RESULTS-frameworks.md)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the matrix N times, interleaved; report each cell's medians")
    args = parser.parse_args()
    seconds = args.seconds or (0.2 if args.quick else 1.5)
    warmup = 0.1 if args.quick else 0.3
    lag = 0.1 if args.quick else 0.5
    cells = plan(args.quick, args.clients.split(","), args.frameworks)
    meta = report.environment(" ".join(["python", "bench/run.py", *sys.argv[1:]]))
    started = time.perf_counter()
    responders = {f"delay{d}": start_responder(d) for d in (0, 10)}
    ports = {name: port for name, (_, port) in responders.items()}
    workdir = Path(tempfile.mkdtemp(prefix="bench-nx-"))
    nx = start_nx(workdir) if any(c["server"] == "nx" for c in cells) else None
    if nx:
        ports["nx"] = nx[1]
    runs: list[list[dict[str, Any]]] = [[] for _ in cells]
    try:
        for rep in range(args.repeat):  # interleaved: every cell once, then again
            for i, cell in enumerate(cells):
                if cell["server"] not in ports:
                    continue
                r = run_cell(cell, ports[cell["server"]], seconds, warmup, lag)
                runs[i].append(r)
                pool = cell.get("pool", 100)
                print(f"[{rep + 1}:{i + 1}/{len(cells)}] {cell['mode']:6} {cell['server']:7} "
                      f"{cell['workload']:8} c={cell['conc']:<4} "
                      f"{'' if pool == 100 else f'pool={pool} '}{cell['client']:14} "
                      f"{status_line(r)}", flush=True)
    finally:
        for proc, _ in responders.values():
            if proc.stdin:
                proc.stdin.close()
            proc.wait(5)
        if nx:
            nx[0].terminate()
            nx[0].wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
    results = [median(rs) for rs in runs if rs]
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    meta["repeat"] = args.repeat
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["seconds_per_cell"] = seconds
    meta["nx"] = bool(nx)
    default = "RESULTS-frameworks" if args.frameworks else "RESULTS"
    out = Path(args.out or HERE / f"{default}{'-quick' if args.quick else ''}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    if args.frameworks:
        plots = [] if args.no_plots else report_frameworks.plot(results, out.parent, out.stem)
        out.write_text(report_frameworks.markdown(results, meta, plots))
    else:
        plots = [] if args.no_plots else report.plots(results, out.parent, out.stem)
        text = report.markdown(results, meta, plots)
        if any(r.get("mode") == "fastapi" for r in results):
            text += "\n## FastAPI end to end\n\n" + "\n".join(report_frameworks.table(results))
        out.write_text(text + "\n")
    print(f"wrote {out} ({meta['duration_s']} s)")
    failed = [f"{c['mode']} {c['client']} {c['workload']} c={c['conc']} ({c['server']}): "
              f"{r['error']}"
              for c, rs in zip(cells, runs, strict=True) for r in rs if "error" in r]
    if failed:  # timings are never asserted, but a client that cannot run is a failure
        print("cells that failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Turn the benchmark results into bench/RESULTS.md and PNG plots (see bench/run.py)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {
    "delay0": "canned-reply responder, 0 ms delay (CPU-bound)",
    "delay10": "canned-reply responder, 10 ms delay per reply (latency-bound)",
    "nx": "nx-27017 (a real server, in-memory)",
}
WORKLOADS = {
    "find_one": "`find_one` of a small document",
    "find": "`find` returning 100 documents of ~1 KB",
    "insert": "`insert_one`",
}
POOLS = (100, 1000)  # maxPoolSize of the c=1000 find_one cells (bench/run.py)
PACKAGES = ["pymongo", "motor", "gevent", "greenlet", "tornado", "uvloop", "nx-27017",
            "matplotlib"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(command: str) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        rev = "unknown"
    return {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "motorpatch": rev,
        "python": platform.python_version(),
        "versions": versions,
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


_DEFAULTS = {"mode": "closed", "pool": 100}  # what a result without the key means


def _find(results: list[dict[str, Any]], **key: Any) -> dict[str, Any] | None:
    """The first successful result matching ``key`` (mode 'closed' unless given)."""
    key.setdefault("mode", "closed")
    for r in results:
        if all(r.get(k, _DEFAULTS.get(k)) == v for k, v in key.items()) and "error" not in r:
            return r
    return None


def _pool(r: dict[str, Any]) -> int:
    return int(r.get("pool", 100))


def _c(r: dict[str, Any]) -> str:
    """The c column: callers, and maxPoolSize when it is not the default 100."""
    return f"{r['conc']}" if _pool(r) == 100 else f"{r['conc']} (pool {_pool(r)})"


def _starved(r: dict[str, Any]) -> str:
    """The fewest operations one caller completed ÷ the mean (0 = a caller starved)."""
    low, mean = r.get("caller_ops_min"), r.get("caller_ops_mean")
    return "-" if low is None or not mean else f"{low / mean:.2f}"


def _closed(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r.get("mode", "closed") == "closed"]


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}" if isinstance(x, float | int) else str(x)


def table(results: list[dict[str, Any]], server: str, workload: str) -> list[str]:
    rows = [r for r in _closed(results) if r["server"] == server and r["workload"] == workload]
    if not rows:
        return []
    sync = _find(results, server=server, workload=workload, client="sync")
    lines = [
        f"### {WORKLOADS[workload]}; {SERVERS[server]}",
        "",
        "| c | client | ops/s | ops/s ÷ sync | ops/s ÷ raw | CPU µs/op | CPU ÷ sync "
        "| CPU ÷ raw | op p50 ms | op p99 ms | min ÷ mean ops/caller | lag p50 ms | lag p99 ms "
        "| p99 ÷ raw | peak RSS MB | ΔRSS/call KB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["conc"], _pool(r))):
        if "error" in r:
            lines.append(f"| {_c(r)} | {r['client']} | failed: {r['error']} |"
                         + " |" * 13)
            continue
        raw = _find(results, server=server, workload=workload, client="raw-asyncio",
                    conc=r["conc"], pool=_pool(r))
        raw = raw or {}
        sync = sync or {}
        lines.append(
            f"| {_c(r)} | {r['client']} | {_fmt(r['ops_s'], 0)} "
            f"| {_ratio(r['ops_s'], sync.get('ops_s'))} | {_ratio(r['ops_s'], raw.get('ops_s'))} "
            f"| {_fmt(r['cpu_us_op'])} | {_ratio(r['cpu_us_op'], sync.get('cpu_us_op'))} "
            f"| {_ratio(r['cpu_us_op'], raw.get('cpu_us_op'))} "
            f"| {_fmt(r.get('op_p50_ms'), 2)} | {_fmt(r.get('op_p99_ms'), 2)} | {_starved(r)} "
            f"| {_fmt(r.get('lag_p50_ms'), 2)} | {_fmt(r.get('lag_p99_ms'), 2)} "
            f"| {_ratio(r.get('lag_p99_ms'), raw.get('lag_p99_ms'))} "
            f"| {_fmt(r['rss_peak_mb'])} | {_fmt(r['rss_per_call_kb'])} |"
        )
    return [*lines, ""]


def targets(results: list[dict[str, Any]]) -> list[str]:
    """The cost-per-operation targets, each as (measured ratio, bound)."""

    def get(client: str, server: str, conc: int, field: str, pool: int = 100) -> float | None:
        r = _find(results, client=client, server=server, workload="find_one", conc=conc,
                  pool=pool)
        if client == "sync":
            r = _find(results, client="sync", server=server, workload="find_one")
        return r.get(field) if r else None

    # (target, other client, server, conc, pool, field, bound, le)
    checks: list[tuple[str, str, str, int, int, str, float, bool]] = []
    checks.append(("CPU/op ≤ 1.10x sync", "sync", "delay0", 1, 100, "cpu_us_op", 1.10, True))
    checks.append(("CPU/op ≤ 1.0x sync (c=1)", "sync", "delay0", 100, 100, "cpu_us_op", 1.0,
                   True))
    for other, bound in (("gevent", 1.3), ("threads", 1.2), ("motor", 1.2),
                         ("pymongo-async", 2.0)):
        checks.append((f"ops/s ≥ {bound}x {other}", other, "delay0", 100, 100, "ops_s", bound,
                       False))
    for pool in POOLS:
        for other in ("threads", "pymongo-async"):
            checks.append((f"ops/s ≥ 1.5x {other}", other, "delay10", 1000, pool, "ops_s", 1.5,
                           False))
    for server in ("delay0", "delay10"):
        checks.append(("lag p99 ≤ gevent's", "gevent", server, 100, 100, "lag_p99_ms", 1.0,
                       True))
        checks.append(("lag p99 ≤ 1.5x raw", "raw-asyncio", server, 100, 100, "lag_p99_ms", 1.5,
                       True))
    for pool in POOLS:
        checks.append(("lag p99 ≤ raw", "raw-asyncio", "delay10", 1000, pool, "lag_p99_ms", 1.0,
                       True))
    checks.append(("ΔRSS/call ≤ 0.8x threads", "threads", "delay10", 1000, 100,
                   "rss_per_call_kb", 0.8, True))
    mps = ["mp-asyncio", "mp-uvloop", "mp-tornado"]
    lines = ["| target (find_one) | server | c | pool | " + " | ".join(mps) + " |",
             "|---|---|---:|---:|" + "---:|" * len(mps)]
    for name, other, server, conc, pool, field, bound, le in checks:
        base = get(other, server, conc, field, pool)
        cells = []
        for mp in mps:
            val = get(mp, server, conc, field, pool)
            if val is None or not base:
                cells.append("-")
                continue
            ratio = val / base
            met = ratio <= bound if le else ratio >= bound
            cells.append(f"{ratio:.2f} {'met' if met else '**not met**'}")
        lines.append(f"| {name} | {server} | {conc} | {pool} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(results: list[dict[str, Any]], meta: dict[str, Any], plots: list[str]) -> str:
    v = meta["versions"]
    lines = [
        "# Client benchmark results",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['duration_s']} s "
        f"({meta['seconds_per_cell']} s measured per cell; each figure is the median of "
        f"{meta.get('repeat', 1)} interleaved run(s) of the cell).",
        "",
        f"- Machine: {meta['nproc']} CPUs, {meta['cpu']}, Linux {meta['kernel']}; load average "
        f"at start {meta['loadavg_start']}, at the end {meta.get('loadavg_end', '?')} "
        "(other jobs shared the machine). Client pinned to CPU 0, servers to CPU 1 when "
        "there are two or more CPUs.",
        f"- motorpatch {meta['motorpatch']}, Python {meta['python']}, "
        + ", ".join(f"{k} {val}" for k, val in v.items()),
        "- Columns are explained in [README.md](README.md). `sync` is PyMongo on one thread "
        "(run at c=1; its figures are the floor for every c); `raw` is the hand-written "
        "asyncio OP_MSG client (bench/rawclient.py).",
        "",
    ]
    failed = [r for r in results if "error" in r]
    if failed:
        lines += [f"{len(failed)} cell(s) failed; see the tables.", ""]
    lines += ["## Targets (motorpatch ÷ the named client)", "",
              "The cost-per-operation targets: CPU per operation against sync PyMongo, "
              "throughput against every alternative, loop lag and memory per parked call "
              "(`pool` is maxPoolSize; at c=1000 with 100, 900 callers queue; with 1000, each "
              "has a connection once the pool has grown).", "", *targets(results)]
    for path in plots:
        lines += [f"![{Path(path).stem}]({Path(path).name})", ""]
    if not plots:
        lines += ["No plots (matplotlib missing or `--no-plots`).", ""]
    for server in SERVERS:
        for workload in WORKLOADS:
            lines += table(results, server, workload)
    lines += open_table(results)
    lines += http_table(results)
    return "\n".join(lines)


def open_table(results: list[dict[str, Any]]) -> list[str]:
    """Open loop: a fixed offered rate of find_one, latency from each scheduled start."""
    rows = [r for r in results if r.get("mode") == "open"]
    if not rows:
        return []
    lines = [
        "### Open loop: `find_one` at a fixed offered rate; canned-reply responder, 10 ms delay",
        "",
        "Callers start operations on a fixed schedule (common.OpenLoop), whatever the client's "
        "speed; latency counts from the scheduled start, so queueing behind a slow client counts. "
        "The 1 ms ticker runs during the whole cell (its wake-ups are in CPU µs/op here).",
        "",
        "| offered/s | callers | client | achieved/s | achieved ÷ offered | op p50 ms | op p99 ms "
        "| p99 ÷ raw | lag p50 ms | lag p99 ms | lag p99 ÷ raw | CPU µs/op | peak RSS MB |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["rate"], r["conc"])):
        if "error" in r:
            lines.append(f"| {r['rate']} | {r['conc']} | {r['client']} | failed: {r['error']} |"
                         + " |" * 9)
            continue
        raw = _find(results, mode="open", client="raw-asyncio", rate=r["rate"],
                    conc=r["conc"]) or {}
        lines.append(
            f"| {r['rate']:,} | {r['conc']:,} | {r['client']} | {_fmt(r['achieved_s'], 0)} "
            f"| {_ratio(r['achieved_s'], r['rate'])} | {_fmt(r['op_p50_ms'], 2)} "
            f"| {_fmt(r['op_p99_ms'], 2)} | {_ratio(r['op_p99_ms'], raw.get('op_p99_ms'))} "
            f"| {_fmt(r.get('lag_p50_ms'), 2)} | {_fmt(r.get('lag_p99_ms'), 2)} "
            f"| {_ratio(r.get('lag_p99_ms'), raw.get('lag_p99_ms'))} | {_fmt(r['cpu_us_op'])} "
            f"| {_fmt(r['rss_peak_mb'])} |"
        )
    return [*lines, ""]


HTTP_KINDS = {
    "mp": "motorpatch: the demo's `make_app(client)` as shipped (`@green` handlers)",
    "blocking": "the same PyMongo calls without motorpatch, blocking the IOLoop",
    "executor": "the same PyMongo calls in a thread pool (`run_in_executor`)",
    "pymongo-async": "an `async def` handler on `AsyncMongoClient`",
    "motor": "an `async def` handler on Motor 3.7 `AsyncIOMotorClient`",
}


def http_table(results: list[dict[str, Any]]) -> list[str]:
    """End-to-end: GET /api/messages of the demo app under a closed-loop HTTP load."""
    rows = [r for r in results if r.get("mode") == "http"]
    if not rows:
        return []
    lines = [
        "### End to end: the demo's `GET /api/messages` (50 messages) on Tornado",
        "",
        "bench/worker_http.py serves it (one process, CPU 0); bench/loadgen.py drives it with "
        "`conns` keep-alive HTTP/1.1 connections, each waiting for its response before the next "
        "request. Latency is per request; CPU µs/req is the server process's. "
        + "; ".join(f"`{k}`: {v}" for k, v in HTTP_KINDS.items()) + ".",
        "",
        "| server | conns | handler | req/s | req/s ÷ blocking | req/s ÷ executor | p50 ms "
        "| p99 ms | CPU µs/req | CPU ÷ blocking | lag p50 ms | lag p99 ms | peak RSS MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = list(HTTP_KINDS)
    for r in sorted(rows, key=lambda r: (r["server"], r["conc"], order.index(r["client"]))):
        if "error" in r:
            lines.append(f"| {r['server']} | {r['conc']} | {r['client']} | failed: "
                         f"{r['error']} |" + " |" * 9)
            continue
        base = _find(results, mode="http", server=r["server"], conc=r["conc"],
                     client="blocking") or {}
        ex = _find(results, mode="http", server=r["server"], conc=r["conc"],
                   client="executor") or {}
        lines.append(
            f"| {r['server']} | {r['conc']} | {r['client']} | {_fmt(r['req_s'], 0)} "
            f"| {_ratio(r['req_s'], base.get('req_s'))} | {_ratio(r['req_s'], ex.get('req_s'))} "
            f"| {_fmt(r['lat_p50_ms'], 2)} | {_fmt(r['lat_p99_ms'], 2)} "
            f"| {_fmt(r['cpu_us_req'])} | {_ratio(r['cpu_us_req'], base.get('cpu_us_req'))} "
            f"| {_fmt(r.get('lag_p50_ms'), 2)} | {_fmt(r.get('lag_p99_ms'), 2)} "
            f"| {_fmt(r.get('rss_peak_mb'))} |"
        )
    return [*lines, ""]


def plots(results: list[dict[str, Any]], outdir: Path, stem: str) -> list[str]:
    """Throughput and loop lag p99 against concurrency, find_one, one panel per server."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for field, label, fname in (("ops_s", "ops/s", "throughput"),
                                ("lag_p99_ms", "loop lag p99 (ms)", "lag")):
        servers = [s for s in SERVERS if any(r["server"] == s for r in _closed(results))]
        fig, axes = plt.subplots(1, len(servers), figsize=(5 * len(servers), 4), squeeze=False)
        for ax, server in zip(axes[0], servers, strict=True):
            rows = [r for r in _closed(results) if r["server"] == server and _pool(r) == 100
                    and r["workload"] == "find_one" and r.get(field) is not None]
            for client in sorted({r["client"] for r in rows}):
                pts = sorted((r["conc"], r[field]) for r in rows if r["client"] == client)
                if client == "sync":  # one thread: the same at every concurrency
                    ax.axhline(pts[0][1], color="black", linestyle="--", label="sync (1 thread)")
                    continue
                style = "-" if client.startswith("mp-") else ":"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o",
                        label=client)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("concurrent callers")
            ax.set_ylabel(label)
            ax.set_title(f"find_one, {server}")
            ax.grid(True, alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = outdir / f"{stem}-{fname}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))
    return written


def main() -> None:
    """Rewrite RESULTS.md and the plots from a results JSON: report.py [bench/RESULTS.json]."""
    import json
    import sys

    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "RESULTS.json")
    data = json.loads(src.read_text())
    out = src.with_suffix(".md")
    written = plots(data["results"], out.parent, out.stem)
    out.write_text(markdown(data["results"], data["meta"], written))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

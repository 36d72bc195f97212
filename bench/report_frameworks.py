"""The framework cells' report (bench/run.py --frameworks): a table, the targets, a plot.

Rows are FastAPI under uvicorn answering one ``find_one`` per request against the 10 ms
responder (bench/worker_fastapi.py), at each number of keep-alive connections, for the four
ways of writing the endpoint; ratios are against plain ``def`` (FastAPI's thread pool) and
``async def`` on ``AsyncMongoClient`` at the same number of connections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KINDS = {
    "green": "`@green def` (motorpatch)",
    "def": "`def` (thread pool)",
    "pymongo-async": "`async def` + AsyncMongoClient",
    "motor": "`async def` + Motor",
}


def _rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r.get("mode") == "fastapi"]


def _get(results: list[dict[str, Any]], kind: str, conc: int, field: str) -> float | None:
    for r in _rows(results):
        if r["client"] == kind and r["conc"] == conc and "error" not in r:
            value = r.get(field)
            return float(value) if isinstance(value, int | float) else None
    return None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _fmt(x: Any, digits: int = 1) -> str:
    return f"{x:,.{digits}f}" if isinstance(x, int | float) else "-"


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| conns | endpoint | req/s | ÷ def | ÷ AsyncMongoClient | p50 ms | p99 ms "
        "| p99 ÷ AsyncMongoClient | lag p50 ms | lag p99 ms | CPU µs/req | peak RSS MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conc in sorted({r["conc"] for r in _rows(results)}):
        for kind, label in KINDS.items():
            row = next((r for r in _rows(results) if r["client"] == kind and r["conc"] == conc),
                       None)  # fmt: skip
            if row is None:
                continue
            if "error" in row:
                lines.append(f"| {conc} | {label} | failed: {row['error'][:80]} |" + " |" * 9)
                continue
            req, p99 = row["req_s"], row["lat_p99_ms"]
            amc_p99 = _get(results, "pymongo-async", conc, "lat_p99_ms")
            lines.append(
                f"| {conc} | {label} | {_fmt(req, 0)} "
                f"| {_ratio(req, _get(results, 'def', conc, 'req_s'))} "
                f"| {_ratio(req, _get(results, 'pymongo-async', conc, 'req_s'))} "
                f"| {_fmt(row['lat_p50_ms'])} | {_fmt(row['lat_p99_ms'])} "
                f"| {_ratio(p99, amc_p99)} "
                f"| {_fmt(row['lag_p50_ms'], 2)} | {_fmt(row['lag_p99_ms'], 2)} "
                f"| {_fmt(row['cpu_us_req'], 0)} | {_fmt(row['rss_peak_mb'])} |"
            )
    return lines


def targets(results: list[dict[str, Any]]) -> list[str]:
    """The issue's targets at 1,000 connections."""

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("met" if ok else "not met")

    green, plain = _get(results, "green", 1000, "req_s"), _get(results, "def", 1000, "req_s")
    amc = _get(results, "pymongo-async", 1000, "req_s")
    p99, amc_p99 = (_get(results, "green", 1000, "lat_p99_ms"),
                    _get(results, "pymongo-async", 1000, "lat_p99_ms"))  # fmt: skip
    both = green is not None and plain is not None
    return [
        "| target (1,000 connections) | measured | verdict |",
        "|---|---:|---|",
        f"| `@green` throughput ≥ 3x plain `def` | {_ratio(green, plain)} "
        f"| {verdict(green >= 3 * plain if both else None)} |",  # type: ignore[operator]
        f"| `@green` throughput ≥ AsyncMongoClient's | {_ratio(green, amc)} "
        f"| {verdict(green >= amc if green and amc else None)} |",
        f"| `@green` latency p99 ≤ AsyncMongoClient's | {_ratio(p99, amc_p99)} "
        f"| {verdict(p99 <= amc_p99 if p99 and amc_p99 else None)} |",
    ]


def plot(results: list[dict[str, Any]], outdir: Path, stem: str) -> list[str]:
    """Throughput, p99 latency and loop lag p99 per endpoint and connections; [] without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    concs = sorted({r["conc"] for r in _rows(results)})
    if not concs:
        return []
    fields = ("req_s", "lat_p99_ms", "lag_p99_ms")
    fig, axes = plt.subplots(1, len(fields), figsize=(15, 4))
    width = 0.8 / len(KINDS)
    for i, (kind, label) in enumerate(KINDS.items()):
        xs = [c + (i - len(KINDS) / 2 + 0.5) * width for c in range(len(concs))]
        for ax, field in zip(axes, fields, strict=True):
            ys = [_get(results, kind, conc, field) or 0 for conc in concs]
            ax.bar(xs, ys, width, label=label.replace("`", ""))
    titles = ("requests/s (higher is better)", "latency p99, ms (lower is better)",
              "event-loop lag p99, ms (lower is better)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xticks(range(len(concs)), [f"{c} connections" for c in concs])
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle("FastAPI + uvicorn, one find_one per request, 10 ms server")
    fig.tight_layout()
    name = f"{stem}.png"
    fig.savefig(outdir / name, dpi=90)
    plt.close(fig)
    return [name]


def markdown(results: list[dict[str, Any]], meta: dict[str, Any], plots: list[str]) -> str:
    lines = [
        "# FastAPI end to end: motorpatch next to the thread pool, AsyncMongoClient and Motor",
        "",
        f"`{meta.get('command', '')}` on {meta.get('cpu', '?')}, "
        f"{meta.get('duration_s', '?')} s, load average at the end {meta.get('loadavg_end', '?')}. "
        "bench/README.md explains the set-up and the columns.",
        "",
        *targets(results),
        "",
        *table(results),
        "",
        *[f"![{p}]({p})" for p in plots],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """``python bench/report_frameworks.py RESULTS-frameworks.json``: rewrite the report."""
    import json
    import sys

    path = Path(sys.argv[1])
    saved = json.loads(path.read_text())
    plots = plot(saved["results"], path.parent, path.stem)
    path.with_suffix(".md").write_text(markdown(saved["results"], saved["meta"], plots))


if __name__ == "__main__":
    main()

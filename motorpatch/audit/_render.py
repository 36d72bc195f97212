"""The audit report as a text table and as a self-contained HTML page.

Owns only presentation: both read the JSON report's ``call_sites`` (already
sorted by total time) and write nothing but what they return.
"""

from __future__ import annotations

import html
import os
from typing import Any

__all__ = ["html_page", "table"]

_HEAD = ("kind", "count", "total ms", "max ms", "mean ms", "call site", "make green")


def _where(site: dict[str, Any]) -> str:
    path = str(site["file"])
    try:
        rel = os.path.relpath(path)
        if not rel.startswith(".."):
            path = rel
    except ValueError:  # another drive (Windows)
        pass
    return f"{path}:{site['line']} in {site['function']}"


def _fix(site: dict[str, Any]) -> str:
    """What to run as green code: the entry point(s) of a blocking site."""
    if site["kind"] != "blocking":
        return "-"
    entries = site.get("entry_points")
    if not entries:
        return "(the coroutine: move the call into a green function)"
    first = entries[0]
    more = f" (+{len(entries) - 1} more)" if len(entries) > 1 else ""
    return f"{first['function']} ({_where(first).split(' in ')[0]}){more}"


def _row(site: dict[str, Any]) -> tuple[str, ...]:
    count = int(site["count"])
    total = float(site["blocked_seconds_total"]) * 1000
    return (
        str(site["kind"]),
        str(count),
        f"{total:.1f}",
        f"{float(site['blocked_seconds_max']) * 1000:.1f}",
        f"{total / count if count else 0.0:.1f}",
        _where(site),
        _fix(site),
    )


def _sorted(report: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(report["call_sites"], key=lambda s: -float(s["blocked_seconds_total"]))


def table(report: dict[str, Any], limit: int | None = None) -> str:
    """Call sites as a plain-text table, by total time, largest first."""
    sites = _sorted(report)
    rows = [_HEAD, *(_row(s) for s in sites[:limit])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i in (0, 5, 6) else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    totals = report.get("totals", {})
    blocking = totals.get("blocking", {})
    stall = totals.get("stall", {})
    lines.append("")
    lines.append(
        f"{len(sites)} call sites; blocking: {blocking.get('count', 0)} operations, "
        f"{float(blocking.get('blocked_seconds', 0)) * 1000:.1f} ms; "
        f"stalls over {report.get('stall_threshold_ms')} ms: {stall.get('count', 0)}, "
        f"{float(stall.get('blocked_seconds', 0)) * 1000:.1f} ms"
    )
    if limit is not None and len(sites) > limit:
        lines.append(f"({len(sites) - limit} more not shown)")
    return "\n".join(lines) + "\n"


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}
table{border-collapse:collapse;width:100%}
th,td{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f4f4f4;user-select:none}
th:after{content:" \\2195";color:#aaa}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.barcell{width:22%}
.bar{height:.8em;min-width:1px;border-radius:2px}
.blocking .bar{background:#c0392b}.stall .bar{background:#e67e22}
.kind{font-weight:600}.blocking .kind{color:#c0392b}.stall .kind{color:#b9670e}
code{font-size:.92em}
"""

_SCRIPT = """
document.querySelectorAll("th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = document.querySelector("tbody");
    var rows = Array.prototype.slice.call(body.rows);
    var desc = th.dataset.desc !== "1";
    th.dataset.desc = desc ? "1" : "0";
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def html_page(report: dict[str, Any]) -> str:
    """The report as one HTML page: a sortable table with a bar per call site; no assets."""
    sites = _sorted(report)
    top = max((float(s["blocked_seconds_total"]) for s in sites), default=0.0) or 1.0
    body = []
    for s in sites:
        kind, count, total, peak, mean, where, fix = _row(s)
        width = 100 * float(s["blocked_seconds_total"]) / top
        cells = [
            (kind, f'<span class="kind">{html.escape(kind)}</span>', ""),
            (count, count, "n"),
            (total, total, "n"),
            (peak, peak, "n"),
            (mean, mean, "n"),
            (where, f"<code>{html.escape(where)}</code>", ""),
            (fix, html.escape(fix), ""),
            (total, f'<div class="bar" style="width:{width:.1f}%"></div>', "barcell"),
        ]
        tds = "".join(
            f'<td class="{cls}" data-v="{html.escape(value, quote=True)}">{shown}</td>'
            for value, shown, cls in cells
        )
        body.append(f'<tr class="{html.escape(kind, quote=True)}">{tds}</tr>')
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in (*_HEAD, "share of the largest"))
    summary = html.escape(table(report).rstrip().splitlines()[-1]) if sites else "no call sites"
    meta = html.escape(f"process {report.get('pid')}, Python {report.get('python')}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>motorpatch audit</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>motorpatch audit: what holds the event loop</h1>"
        f"<p>{summary}</p><p><small>{meta}. Click a column heading to sort.</small></p>"
        f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )

"""``python -m motorpatch.audit REPORT.json [--html OUT.html] [--limit N]``: read an audit report.

Prints the call sites as a table sorted by total time, largest first; with
``--html`` also writes a self-contained page (sortable table, a bar per site).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from motorpatch.audit._render import html_page, table

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m motorpatch.audit",
        description="Show a motorpatch audit report (MOTORPATCH_AUDIT=report.json).",
    )
    parser.add_argument("report", type=Path, help="the JSON report the audit wrote")
    parser.add_argument("--html", type=Path, metavar="OUT.html", help="also write an HTML page")
    parser.add_argument("--limit", type=int, default=None, help="show only the N largest sites")
    args = parser.parse_args(argv)
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    except FileNotFoundError:
        parser.error(
            f"{args.report} does not exist: run your app with MOTORPATCH_AUDIT={args.report} "
            "(or install(audit=...)) and let it exit, or call motorpatch.audit.write_report()"
        )
    except json.JSONDecodeError as exc:
        parser.error(f"{args.report} is not JSON ({exc}): is it a motorpatch audit report?")
    if not isinstance(report, dict) or "call_sites" not in report:
        parser.error(f"{args.report} has no 'call_sites': it is not a motorpatch audit report")
    sys.stdout.write(table(report, args.limit))
    if args.html is not None:
        args.html.write_text(html_page(report), encoding="utf-8")
        sys.stdout.write(f"wrote {args.html}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m motorpatch.audit``: the table and the HTML page of a report."""

from __future__ import annotations

import html.parser
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

REPORT: dict[str, Any] = {
    "motorpatch_audit": 1,
    "pid": 1,
    "python": "3.12",
    "stall_threshold_ms": 20.0,
    "totals": {
        "blocking": {"count": 7, "blocked_seconds": 0.7},
        "stall": {"count": 2, "blocked_seconds": 0.9},
    },
    "call_sites": [  # deliberately not in order: the tool sorts by total
        {"kind": "blocking", "file": "/app/small.py", "line": 3, "function": "small",
         "count": 7, "blocked_seconds_total": 0.7, "blocked_seconds_max": 0.2,
         "entry_points": [{"file": "/app/small.py", "line": 9, "function": "Handler.get",
                           "count": 7}]},
        {"kind": "stall", "file": "/app/big.py", "line": 10, "function": "big<&>",
         "count": 2, "blocked_seconds_total": 0.9, "blocked_seconds_max": 0.5},
    ],
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "motorpatch.audit", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )


def test_table_is_sorted_by_total_time(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(REPORT))
    out = _run(str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["kind", "count", "total"]
    big, small = lines[2], lines[3]
    assert big.split()[:5] == ["stall", "2", "900.0", "500.0", "450.0"]
    assert big.endswith("/app/big.py:10 in big<&>  -")
    assert small.split()[:5] == ["blocking", "7", "700.0", "200.0", "100.0"]
    assert small.endswith("/app/small.py:3 in small  Handler.get (/app/small.py:9)")
    assert "blocking: 7 operations, 700.0 ms" in out.stdout


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_page_is_self_contained_sortable_with_a_bar_per_site(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(REPORT))
    page_path = tmp_path / "r.html"
    out = _run(str(path), "--html", str(page_path))
    assert out.returncode == 0, out.stderr
    page = _Page()
    page.feed(page_path.read_text())
    names = [t for t, _ in page.tags]
    assert "script" in names and names.count("tr") == 3  # heading + 2 sites
    assert not [a for t, a in page.tags if t in ("link", "img") or a.get("src")]  # no assets
    bars = [a["style"] for t, a in page.tags if t == "div" and a.get("class") == "bar"]
    assert bars == ["width:100.0%", "width:77.8%"]
    assert "/app/big.py:10 in big<&>" in "".join(page.text)  # escaped, then read back


def test_missing_report_says_how_to_make_one(tmp_path: Path) -> None:
    out = _run(str(tmp_path / "none.json"))
    assert out.returncode == 2
    assert "MOTORPATCH_AUDIT=" in out.stderr

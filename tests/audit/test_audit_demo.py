"""The audit on an example app: examples/messages with its JSON list left unconverted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "examples" / "messages" / "app.py")


@pytest.mark.parametrize("converted", [False, True])
def test_report_names_the_unconverted_handler(
    server_uri: str, tmp_path: Path, converted: bool
) -> None:
    report = tmp_path / "audit.json"
    args = [sys.executable, "-m", "examples.messages.audit_demo", str(report), "--requests", "10"]
    out = subprocess.run(
        [*args, "--converted"] if converted else args,
        cwd=ROOT, env={**os.environ, "MONGODB_URI": server_uri},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "10 x GET /api/messages 200" in out.stdout
    sites = json.loads(report.read_text())["call_sites"]
    blocking = [
        (s["file"], s["function"], s["count"], [(e["function"], e["count"]) for e in entries])
        for s in sites
        if s["kind"] == "blocking" and (entries := s["entry_points"]) is not None
    ]
    if converted:
        assert blocking == []
    else:
        assert blocking == [
            (APP, "BoardHandler.recent_messages", 10, [("ApiMessagesHandler.get", 10)])
        ]

"""The audit: blocking operations and green stalls, per call site, in a JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import audit_app
import pytest

import motorpatch
import motorpatch.audit
from motorpatch import _recorder as _record
from motorpatch.bridge import _state as bridge_state
from tests.support.loops import run_on
from tests.support.proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[Path]:
    """The audit on (threshold 50 ms, below the app's 100 ms stalls), off and empty after."""
    path = tmp_path / "audit.json"
    _record.reset()
    motorpatch.install(audit=path, audit_stall_ms=50)
    try:
        yield path
    finally:
        motorpatch.audit.disable()
        _record.reset()


def _sites(report: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    ours = [s for s in report["call_sites"] if s["file"] == audit_app.__file__]
    return {(s["kind"], s["line"]): s for s in ours}


def test_report_names_exactly_the_apps_sites_with_their_counts(
    audit: Path, make_client: Any, proxy: FaultProxy
) -> None:
    proxy.delay = 0.03  # every reply: a blocking operation holds the loop >= 30 ms
    coll = make_client(proxy.uri)["audit_test"]["app"]
    coll.insert_one({"x": 0})  # connect outside the loop: no loop, not audited
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", motorpatch.BlockingCallWarning)
        run_on("asyncio", lambda: audit_app.run(coll))
    written = motorpatch.audit.write_report()
    assert written == audit
    report = json.loads(audit.read_text())
    line = audit_app.sites()
    sites = _sites(report)
    assert set(sites) == {
        ("blocking", line["blocking-find"]),
        ("blocking", line["blocking-insert"]),
        ("blocking", line["blocking-legacy"]),
        ("stall", line["stall-before-wait"]),
        ("stall", line["stall-after-wait"]),
        ("stall", line["stall-never-waits"]),
    }, report["call_sites"]
    counts = {key: s["count"] for key, s in sites.items()}
    assert counts == {
        ("blocking", line["blocking-find"]): 3,
        ("blocking", line["blocking-insert"]): 1,
        ("blocking", line["blocking-legacy"]): 2,
        ("stall", line["stall-before-wait"]): 1,
        ("stall", line["stall-after-wait"]): 1,
        ("stall", line["stall-never-waits"]): 2,
    }
    find = sites[("blocking", line["blocking-find"])]
    assert find["function"] == "unconverted_handler"
    assert find["entry_points"] == []  # called from the coroutine itself
    legacy = sites[("blocking", line["blocking-legacy"])]
    assert legacy["function"] == "legacy_lookup"
    assert [(e["function"], e["count"]) for e in legacy["entry_points"]] == [("legacy_service", 2)]
    assert legacy["entry_points"][0]["line"] == line["legacy-entry"] + 1  # its call
    assert find["blocked_seconds_max"] >= 0.03
    assert find["blocked_seconds_total"] >= 3 * 0.03
    stall = sites[("stall", line["stall-never-waits"])]
    assert stall["function"] == "pure_cpu"
    assert audit_app.STALL_S <= stall["blocked_seconds_max"] <= stall["blocked_seconds_total"]
    assert stall["blocked_seconds_total"] >= 2 * audit_app.STALL_S
    assert report["stall_threshold_ms"] == 50
    totals = [s["blocked_seconds_total"] for s in report["call_sites"]]
    assert totals == sorted(totals, reverse=True)


def test_first_find_one_on_a_fresh_client_counts_one_operation(make_client: Any) -> None:
    motorpatch.install()
    before = motorpatch.stats()["blocking_calls"]

    async def main() -> None:
        # Made here, the client has not found its server yet: the first find_one waits
        # in server selection, then checks out a connection (two waits, one operation).
        coll = make_client()["audit_test"]["fresh"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            coll.find_one({})
            coll.find_one({})
        assert len([w for w in caught if w.category is motorpatch.BlockingCallWarning]) == 2

    run_on("asyncio", main)
    assert motorpatch.stats()["blocking_calls"] - before == 2


def test_audit_records_in_threads_each_with_its_loop(audit: Path, coll: Any) -> None:
    errors: list[BaseException] = []

    motorpatch.install(blocking="ignore")  # catch_warnings is not thread-safe; still audited

    def worker() -> None:
        try:
            run_on("asyncio", lambda: audit_app.unconverted_handler(coll))
            run_on("asyncio", lambda: audit_app.unconverted_handler(coll))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    site = _sites(motorpatch.audit.report())[("blocking", audit_app.sites()["blocking-find"])]
    assert site["count"] == 6


def test_forked_child_writes_its_own_report(tmp_path: Path, server_uri: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys, warnings
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import pymongo, motorpatch, audit_app
        warnings.simplefilter("ignore")
        motorpatch.install()
        coll = pymongo.MongoClient({server_uri!r})["audit_test"]["fork"]
        asyncio.run(audit_app.unconverted_handler(coll))
        pid = os.fork()
        if pid == 0:
            coll = pymongo.MongoClient({server_uri!r})["audit_test"]["fork"]
            asyncio.run(audit_app.unconverted_writer(coll))
            sys.exit(0)
        os.waitpid(pid, 0)
        print(pid)
        """
    )
    report = tmp_path / "audit.json"
    env = {**os.environ, "MOTORPATCH_AUDIT": str(report), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    child = int(out.stdout.split()[-1])
    parent_report = json.loads(report.read_text())
    parent_sites = {(s["function"], s["count"]) for s in parent_report["call_sites"]}
    child_report = json.loads((tmp_path / f"audit.{child}.json").read_text())
    child_sites = {(s["function"], s["count"]) for s in child_report["call_sites"]}
    assert parent_sites == {("unconverted_handler", 1)}
    assert child_sites == {("unconverted_writer", 1)}
    assert child_report["pid"] == child


def test_bad_stall_threshold_is_refused_naming_the_fix() -> None:
    with pytest.raises(ValueError, match=r"stall_ms=0 is not a positive number.*stall_ms=20"):
        motorpatch.install(audit="x.json", audit_stall_ms=0)
    with pytest.raises(ValueError, match=r"stall_ms='20' is not a positive number"):
        motorpatch.install(audit_stall_ms="20")  # type: ignore[arg-type]
    assert not motorpatch.audit.is_enabled()
    assert not motorpatch.is_installed()


def test_write_report_without_a_path_says_how_to_give_one() -> None:
    with pytest.raises(ValueError, match=r"MOTORPATCH_AUDIT=report\.json"):
        motorpatch.audit.write_report()


def test_stalls_below_the_threshold_and_with_the_audit_off_are_not_recorded(coll: Any) -> None:
    _record.reset()
    motorpatch.install()
    assert bridge_state.stall_threshold == float("inf")
    run_on("asyncio", audit_app.pure_cpu)
    assert _record.snapshot() == []


def test_uninstall_removes_the_checkin_hook_of_pools_that_served_blocking_calls(
    coll: Any,
) -> None:
    motorpatch.install(blocking="ignore", audit_stall_ms=50, audit=None)
    _record.reset()
    motorpatch.audit.enable(None)
    try:
        run_on("asyncio", lambda: audit_app.unconverted_handler(coll))
        pool = next(iter(coll.database.client._topology._servers.values())).pool
        assert "checkin" in vars(pool)  # this pool served a blocking call
        assert [s["count"] for s in motorpatch.audit.report()["call_sites"]] == [1]
        motorpatch.uninstall()
        assert "checkin" not in vars(pool)
    finally:
        motorpatch.audit.disable()
        _record.reset()


def test_bad_stall_threshold_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOTORPATCH_AUDIT", str(tmp_path / "a.json"))
    monkeypatch.setenv("MOTORPATCH_AUDIT_STALL_MS", "fast")
    with pytest.raises(ValueError, match=r"MOTORPATCH_AUDIT_STALL_MS='fast' is not a number"):
        motorpatch.install()
    assert not motorpatch.audit.is_enabled()

"""pytest plugin running PyMongo's own test suite plain or green (load with ``-p compat.plugin``).

``--compat-mode``:

- ``plain``: the tests run as PyMongo runs them; motorpatch is not installed.
- ``installed``: ``motorpatch.install()`` but no green code (a diagnosis aid: it
  separates "the patches change plain behaviour" from "green code differs").
- ``green``: ``motorpatch.install()``; each test's call phase (for unittest
  tests that is ``TestCase.run``: setUp, the test method, tearDown and the
  cleanups) runs inside ``@motorpatch.green`` on a long-lived asyncio loop
  driven by ``run_until_complete`` on the test thread. Collection, module and
  class fixtures (``setUpClass``, PyMongo's package fixture) stay plain, as
  application start-up code does. ``compat.monitor`` measures the loop's lag.

In every mode the nx-27017 adapters (``compat.adapters``) are applied, each
test gets a per-test timeout (``--compat-timeout``, SIGALRM, failing the test;
a hard ``faulthandler`` exit backs it up), and one JSON line per test is
appended to ``--compat-out``: node id, outcome, phase, duration, a one-line
message, and in green mode the loop measurements.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import signal
import sys
import time
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from compat import adapters
from compat.monitor import LoopMonitor, install_own_wait_markers

MODES = ("plain", "installed", "green")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compat", "motorpatch compatibility run")
    group.addoption("--compat-mode", choices=MODES, default="plain")
    group.addoption("--compat-out", default=None, help="JSON-lines file for per-test records")
    group.addoption("--compat-timeout", type=float, default=60.0, help="seconds per test")
    group.addoption("--compat-skip-file", default=None,
                    help="node ids (one a line) not to run again: done before a crash")


class _State:
    mode = "plain"
    out: Any = None
    timeout = 60.0
    loop: asyncio.AbstractEventLoop | None = None
    records: dict[str, dict[str, Any]] = {}


S = _State()


def pytest_configure(config: pytest.Config) -> None:
    S.mode = config.getoption("compat_mode")
    S.timeout = config.getoption("compat_timeout")
    out = config.getoption("compat_out")
    if out:
        S.out = Path(out).open("a", buffering=1)  # noqa: SIM115 - closed in unconfigure
    if not adapters.apply():
        adapters.applied["(none)"] = ["PyMongo's test package was not loaded"]
    if S.mode in ("installed", "green"):
        import motorpatch

        motorpatch.install()
    if S.mode == "green":
        install_own_wait_markers()
        S.loop = asyncio.new_event_loop()


def pytest_unconfigure(config: pytest.Config) -> None:
    if S.loop is not None and not S.loop.is_closed():
        S.loop.close()
    if S.out is not None:
        S.out.write(json.dumps({"summary": True, "adapters": adapters.applied}) + "\n")
        S.out.close()
        S.out = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = config.getoption("compat_skip_file")
    if not path:
        return
    done = set(Path(path).read_text().splitlines())
    keep = [i for i in items if i.nodeid not in done]
    config.hook.pytest_deselected(items=[i for i in items if i.nodeid in done])
    items[:] = keep


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    if S.out is not None:  # if the process dies in this test, the runner knows which
        S.out.write(json.dumps({"start": nodeid}) + "\n")


# -- per-test timeout --------------------------------------------------------
def _on_alarm(signum: int, frame: Any) -> None:
    pytest.fail(f"compat: test exceeded {S.timeout:g}s (--compat-timeout)", pytrace=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    S.records[item.nodeid] = {"nodeid": item.nodeid, "mode": S.mode, "outcome": "passed"}
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    # A hard backstop for a hang signals cannot interrupt: dump every stack, exit.
    faulthandler.dump_traceback_later(S.timeout * 2 + 30, exit=True)
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
        record = S.records.pop(item.nodeid)
        record["duration"] = round(time.perf_counter() - started, 3)
        if S.out is not None:
            S.out.write(json.dumps(record) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None]:
    signal.setitimer(signal.ITIMER_REAL, S.timeout)
    return (yield)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = S.records.get(report.nodeid)
    if record is None or report.passed:
        return
    if report.skipped and hasattr(report, "wasxfail"):
        outcome = "xfailed"
    elif report.skipped:
        outcome = "skipped"
    else:
        outcome = "failed" if report.when == "call" else "error"
    if record["outcome"] in ("failed", "error"):
        return  # keep the first failure
    record["outcome"] = outcome
    record["phase"] = report.when
    record["message"] = _message(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed and S.out is not None:
        S.out.write(json.dumps({"collect_error": report.nodeid, "mode": S.mode,
                                "message": _message(report)}) + "\n")


def _message(report: pytest.TestReport | pytest.CollectReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])[:300]
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300] if crash.message else ""
    return str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ""


# -- green mode --------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    if S.mode != "green":
        return (yield)
    original = item.runtest
    item.runtest = lambda: _run_green(item, original)  # type: ignore[method-assign]
    try:
        return (yield)
    finally:
        del item.runtest


def _run_green(item: pytest.Item, body: Callable[[], None]) -> None:
    import motorpatch

    assert S.loop is not None
    loop = S.loop
    monitor = LoopMonitor(loop)
    green_body = motorpatch.green(body)

    async def main() -> None:
        monitor.start()
        try:
            await green_body()  # type: ignore[misc]
        finally:
            monitor.stop()

    try:
        with warnings.catch_warnings():
            # The loop is ours; a warning about it is not the test's.
            warnings.filterwarnings("ignore", "unclosed event loop", ResourceWarning)
            loop.run_until_complete(main())
    except BaseException:
        if not loop.is_running() and _pending(loop):
            # Interrupted (the timeout) with the green task parked: start a fresh loop
            # so the next test does not resume this one's leftovers.
            S.loop = asyncio.new_event_loop()
        raise
    finally:
        record = S.records.get(item.nodeid)
        if record is not None:
            record.update(monitor.record())
            record["lag_tasks_left"] = len(_pending(loop))


def _pending(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks(loop) if not t.done()]


def pytest_report_header(config: pytest.Config) -> list[str]:
    import pymongo

    return [f"compat: mode={S.mode} pymongo={pymongo.version} timeout={S.timeout:g}s"]


if sys.platform == "win32":  # pragma: no cover
    raise ImportError("compat.plugin needs SIGALRM (POSIX)")

"""Other detectors: green code passes under blockbuster and asyncio's debug mode, and
motorpatch's own detector and audit still catch blocking calls with blockbuster on."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from blockbuster import BlockingError, blockbuster_ctx

import motorpatch
import motorpatch.audit
from motorpatch import _recorder as _record


@pytest.fixture
def asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    caplog.set_level(logging.WARNING, logger="asyncio")
    records: list[logging.LogRecord] = []
    yield records
    records.extend(r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR)


def test_green_code_is_clean_under_blockbuster_and_asyncio_debug_mode(
    server_uri: str, asyncio_errors: list[logging.LogRecord]
) -> None:
    """Fresh clients (server selection, connect), pool waits (maxPoolSize 3 for 100 calls),
    monitor threads notifying green waiters: nothing blocks the loop's thread."""
    motorpatch.install()
    blocked: collections.Counter[str] = collections.Counter()

    async def main(client: pymongo.MongoClient[dict[str, Any]]) -> int:
        @motorpatch.green
        def work(i: int) -> Any:
            try:
                client.bb_test.c.insert_one({"i": i})
                return client.bb_test.c.find_one({"i": i}, {"_id": 0})
            except BlockingError as exc:
                blocked["".join(traceback.format_exception(exc)[-3:])] += 1
                return None

        with blockbuster_ctx():  # as its users activate it: around the async code under test
            found = await asyncio.gather(*(work(i) for i in range(100)))
        return sum(1 for i, doc in enumerate(found) if doc == {"i": i})

    for _ in range(15):
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            server_uri, maxPoolSize=3, heartbeatFrequencyMS=500
        )
        try:
            assert asyncio.run(main(client), debug=True) == 100 or blocked
        finally:
            client.bb_test.c.drop()
            client.close()
    assert not blocked, f"blockbuster saw green code block: {dict(blocked)}"
    assert not asyncio_errors, [r.getMessage() for r in asyncio_errors]


def test_blocking_calls_are_still_caught_with_blockbuster_on(coll: Any, tmp_path: Any) -> None:
    coll.insert_one({"x": 1})
    _record.reset()
    motorpatch.install(audit=tmp_path / "audit.json")
    line = 0
    try:

        async def main() -> type[BaseException] | None:
            nonlocal line
            with blockbuster_ctx(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
                    coll.find_one({})
                    raised = None
                except BlockingError:
                    raised = BlockingError
            ours = [w for w in caught if w.category is motorpatch.BlockingCallWarning]
            assert [(w.filename, w.lineno) for w in ours] == [(__file__, line)]
            return raised

        # The connection was made outside the loop: a plain blocking socket, which
        # blockbuster catches too (after motorpatch has warned and recorded).
        assert asyncio.run(main()) is BlockingError
        sites = [
            (s["kind"], s["line"], s["count"])
            for s in motorpatch.audit.report()["call_sites"]
            if s["file"] == __file__
        ]
        assert sites == [("blocking", line, 1)]
    finally:
        motorpatch.audit.disable()
        _record.reset()


def test_a_woken_green_waiter_waits_for_the_lock_without_blocking_the_loop() -> None:
    """The notifying thread still holds the condition's lock when the green waiter wakes
    (as a monitor thread in ``notify_all()`` does): the loop keeps running meanwhile, and
    blockbuster sees no blocking ``acquire``."""
    from motorpatch.bridge import green_cond_wait
    from tests.support.loops import LagTicker

    motorpatch.install()
    cond = threading.Condition(threading.Lock())
    hold = 0.2

    def notifier() -> None:
        while not cond._waiters:  # type: ignore[attr-defined]
            time.sleep(0.001)  # polling another thread's state: nothing to wait on
        with cond:
            cond.notify()
            time.sleep(hold)  # still holding the lock after the notify

    @motorpatch.green
    def wait() -> bool:
        with cond:
            return green_cond_wait(asyncio.get_running_loop(), cond, 5.0)

    async def main() -> tuple[bool, float]:
        thread = threading.Thread(target=notifier)
        thread.start()
        try:
            with blockbuster_ctx(), LagTicker() as ticker:
                woken = await wait()
        finally:
            await asyncio.to_thread(thread.join)
        return woken, ticker.max

    woken, lag = asyncio.run(main())
    assert woken
    assert lag < hold / 2, f"the loop stalled {lag * 1000:.0f} ms while the lock was held"

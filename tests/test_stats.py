"""motorpatch.stats(): in-flight calls, parked greenlets by reason, blocking calls, budget."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from typing import Any

import pytest

import motorpatch
from motorpatch.bridge import REASONS
from tests.support.loops import run_on


def _parked(reason: str) -> int:
    return int(motorpatch.stats()["parked"][reason])


def test_snapshot_shape_is_json_ready_and_idle_at_rest() -> None:
    snap = motorpatch.stats()
    assert json.loads(json.dumps(snap)) == snap
    assert set(snap) == {"in_flight", "parked", "green_calls", "blocking_calls", "budget"}
    assert set(snap["parked"]) == set(REASONS)
    assert snap["in_flight"] == 0
    assert not any(snap["parked"].values())
    assert snap["budget"]["slice_ms"] > 0


def test_parked_reads_and_pool_waits_are_counted_while_the_server_hangs(
    installed: None, loop_kind: str, proxy: Any, make_client: Any, coll: Any
) -> None:
    coll.insert_one({"_id": 1})
    client = make_client(proxy.uri, maxPoolSize=2)
    client.admin.command("ping")  # handshake done before the hang
    target = client[coll.database.name][coll.name]
    calls_before = motorpatch.stats()["green_calls"]
    n = 5

    @motorpatch.green
    def read() -> Any:
        return target.find_one({"_id": 1})

    async def main() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        loop = asyncio.get_running_loop()
        sent = proxy.requests
        proxy.hang()
        tasks = [asyncio.ensure_future(read()) for _ in range(n)]
        # Two requests reach the server (the pool's two connections); the rest wait.
        await loop.run_in_executor(None, proxy.wait_requests, sent + 2)
        while _parked("pool wait") < n - 2:  # queued behind maxPoolSize: parked, not blocked
            await asyncio.sleep(0)
        during = motorpatch.stats()
        proxy.resume()
        results = await asyncio.gather(*tasks)
        return during, motorpatch.stats(), results

    during, after, results = run_on(loop_kind, main)
    assert results == [{"_id": 1}] * n
    assert during["in_flight"] == n
    assert during["parked"]["socket read"] == 2
    assert during["parked"]["pool wait"] == n - 2
    assert after["in_flight"] == 0
    assert not any(after["parked"].values())
    assert after["green_calls"] - calls_before == n


def test_await_and_sleep_reasons(installed: None) -> None:
    release = asyncio.Event()

    @motorpatch.green
    def waits_on_event() -> str:
        motorpatch.await_(release.wait())
        return "done"

    async def main() -> tuple[int, str]:
        task = asyncio.ensure_future(waits_on_event())
        while _parked("await_") == 0:
            await asyncio.sleep(0)
        seen = _parked("await_")
        release.set()
        return seen, await task

    assert asyncio.run(main()) == (1, "done")
    assert _parked("await_") == 0


def test_blocking_calls_are_counted_even_when_the_warning_is_filtered(
    installed: None, coll: Any
) -> None:
    async def main() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coll.find_one({})  # on the loop's thread, outside green code: blocks the loop
            coll.find_one({})

    before = motorpatch.stats()["blocking_calls"]
    asyncio.run(main())
    assert motorpatch.stats()["blocking_calls"] - before >= 2


def test_spent_budget_defers_and_green_time_is_accounted(installed: None) -> None:
    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    @motorpatch.green
    def cpu_bound() -> None:
        for _ in range(3):
            spin(0.003)  # longer than the 1 ms slice
            motorpatch.await_(asyncio.sleep(0))

    before = motorpatch.stats()["budget"]

    async def main() -> None:
        await asyncio.gather(*(cpu_bound() for _ in range(3)))

    asyncio.run(main())
    after = motorpatch.stats()["budget"]
    assert after["deferrals"] > before["deferrals"]
    assert after["green_seconds"] - before["green_seconds"] >= 9 * 0.003


def test_stats_from_another_thread_sees_the_loop_threads_calls(installed: None) -> None:
    release = threading.Event()
    seen: list[int] = []

    @motorpatch.green
    def parked() -> None:
        motorpatch.await_(asyncio.get_running_loop().run_in_executor(None, release.wait))

    def watcher() -> None:
        deadline = time.monotonic() + 10
        while motorpatch.stats()["in_flight"] < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append(motorpatch.stats()["in_flight"])
        release.set()

    async def main() -> None:
        thread = threading.Thread(target=watcher)
        thread.start()
        await asyncio.gather(parked(), parked())
        thread.join()

    asyncio.run(main())
    assert seen == [2]


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_is_documented(reason: str) -> None:
    assert f"``{reason}``" in (motorpatch.stats.__doc__ or "")


def test_a_call_abandoned_on_a_closed_loop_is_not_in_flight(installed: None) -> None:
    loop = asyncio.new_event_loop()
    before = motorpatch.stats()["in_flight"]
    never = loop.create_future()

    @motorpatch.green
    def parked_forever() -> None:
        motorpatch.await_(never)

    tasks: list[Any] = []

    async def start() -> None:
        tasks.append(asyncio.ensure_future(parked_forever()))
        while _parked("await_") == 0:
            await asyncio.sleep(0)

    try:
        loop.run_until_complete(start())
        assert motorpatch.stats()["in_flight"] == before + 1
    finally:
        loop.close()  # without cancelling: the call stays parked for good
    snap = motorpatch.stats()
    assert snap["in_flight"] == before
    assert snap["parked"]["await_"] == 0

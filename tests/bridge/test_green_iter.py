"""``green_iter`` and ``@green`` generator functions: async iteration whose steps are green.

Against the real server through the fault proxy: each ``getMore`` waits on a
delayed reply, and the proof that it parked instead of blocking is the loop
lag measured meanwhile and two iterations overlapping. BlockingCallWarning is
an error here: a ``next()`` that ran on the loop outside green code fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import monitoring

import motorpatch
from tests.support.loops import LagTicker, run_on

pytestmark = [
    pytest.mark.usefixtures("installed"),
    pytest.mark.filterwarnings("error::motorpatch.BlockingCallWarning"),
]


def _in_green_code() -> bool:
    try:
        motorpatch.await_(asyncio.sleep(0))
    except motorpatch.GreenContextError:
        return False
    return True


def test_cursor_batches_park_and_iterations_overlap(loop_kind, proxy, make_client, coll):
    coll.insert_many([{"i": i} for i in range(40)])
    pc = make_client(proxy.uri)[coll.database.name][coll.name]
    delay = 0.1

    async def drain() -> list[int]:
        cursor = pc.find({}, {"_id": 0}).sort("i", 1).batch_size(10)  # find + 3 getMores
        return [doc["i"] async for doc in motorpatch.green_iter(cursor)]

    async def main() -> tuple[float, list[list[int]], LagTicker]:
        await drain()  # warm: the connections exist
        proxy.delay = delay
        with LagTicker() as lag:
            start = time.perf_counter()
            results = await asyncio.gather(*[drain() for _ in range(4)])
            elapsed = time.perf_counter() - start
        return elapsed, results, lag

    elapsed, results, lag = run_on(loop_kind, main)
    assert results == [list(range(40))] * 4
    serial = 4 * 4 * delay  # four cursors, four round trips each
    print(
        f"green_iter[{loop_kind}]: 4 x 4 batches in {elapsed:.2f}s (serial {serial:.1f}s), "
        f"loop lag max {lag.max * 1000:.1f} ms"
    )
    assert elapsed < serial / 2, "the iterations did not overlap"
    assert lag.max < delay / 2, "a getMore blocked the loop"


class _Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


def test_breaking_early_and_closing_kills_the_cursor(proxy, make_client, coll):
    coll.insert_many([{"i": i} for i in range(30)])
    commands = _Commands()
    pc = make_client(proxy.uri, event_listeners=[commands])[coll.database.name][coll.name]

    async def main() -> tuple[list[int], Any]:
        cursor = pc.find({}, {"_id": 0}).sort("i", 1).batch_size(5)
        seen = []
        async with contextlib.aclosing(motorpatch.green_iter(cursor)) as docs:
            async for doc in docs:
                seen.append(doc["i"])
                if len(seen) == 7:
                    break
        return seen, cursor

    seen, cursor = run_on("asyncio", main)
    assert seen == list(range(7))
    assert cursor.cursor_id is not None
    assert commands.names.count("killCursors") == 1  # sent from green code: no warning


def test_any_sync_iterator_and_its_exceptions() -> None:
    def numbers() -> Iterator[int]:
        yield 1
        assert _in_green_code()
        yield 2
        raise ValueError("bad row")

    async def main() -> list[int]:
        seen = []
        with pytest.raises(ValueError, match="bad row"):
            async for n in motorpatch.green_iter(numbers()):
                seen.append(n)
        return seen

    assert run_on("asyncio", main) == [1, 2]


def test_green_generator_steps_throws_and_closes_as_green_code() -> None:
    log: list[Any] = []

    @motorpatch.green
    def session() -> Iterator[str]:
        log.append(("open", _in_green_code()))
        try:
            yield "session"
        except KeyError as exc:
            log.append(("saw", repr(exc)))
            raise
        finally:
            log.append(("close", _in_green_code()))

    async def main() -> None:
        # FastAPI drives yield dependencies through asynccontextmanager, as here.
        async with contextlib.asynccontextmanager(session)() as value:
            assert value == "session"
        with pytest.raises(KeyError):
            async with contextlib.asynccontextmanager(session)():
                raise KeyError("in the request")
        agen = session()
        assert await anext(agen) == "session"
        await agen.aclose()

    run_on("asyncio", main)
    assert log == [
        ("open", True),
        ("close", True),
        ("open", True),
        ("saw", "KeyError('in the request')"),
        ("close", True),
        ("open", True),
        ("close", True),
    ]


def test_green_generator_reads_a_cursor_and_overlaps(proxy, make_client, coll):
    coll.insert_many([{"i": i} for i in range(20)])
    pc = make_client(proxy.uri)[coll.database.name][coll.name]
    delay = 0.1

    @motorpatch.green
    def rows() -> Iterator[int]:
        for doc in pc.find({}, {"_id": 0}).sort("i", 1).batch_size(10):
            yield doc["i"]

    async def drain() -> list[int]:
        return [i async for i in rows()]

    async def main() -> tuple[float, list[list[int]]]:
        await drain()
        proxy.delay = delay
        start = time.perf_counter()
        results = await asyncio.gather(drain(), drain(), drain())
        return time.perf_counter() - start, results

    elapsed, results = run_on("asyncio", main)
    assert results == [list(range(20))] * 3
    assert elapsed < 3 * 2 * delay * 0.6, f"three generators took {elapsed:.2f}s: no overlap"

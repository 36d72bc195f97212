"""An app with known blocking call sites and known CPU stalls, for the audit's tests.

``run(coll)`` drives it on a running asyncio loop. The lines the tests expect
in the report are found by their ``# site:`` comments.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import motorpatch

STALL_S = 0.1  # each stall spins this long; the tests use a threshold well below it


def spin(seconds: float) -> None:
    """CPU work that holds the loop (a stand-in for deserialising documents)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def unconverted_handler(coll: Any) -> None:
    coll.find_one({})  # site: blocking-find


def legacy_lookup(coll: Any) -> Any:
    return coll.find_one({"x": 1})  # site: blocking-legacy


def legacy_service(coll: Any) -> Any:  # site: legacy-entry
    return legacy_lookup(coll)


async def unconverted_writer(coll: Any) -> None:
    coll.insert_one({"x": 1})  # site: blocking-insert


@motorpatch.green  # site: stall-after-wait
def converted_but_slow(coll: Any) -> None:
    spin(STALL_S)
    coll.find_one({})  # site: stall-before-wait
    spin(STALL_S)  # ends with the call: reported at the definition's first line


@motorpatch.green  # site: stall-never-waits
def pure_cpu() -> int:
    spin(STALL_S)
    return 1


@motorpatch.green
def converted_and_fast(coll: Any) -> None:
    coll.find_one({})


async def run(coll: Any) -> None:
    for _ in range(3):
        await unconverted_handler(coll)
    await unconverted_writer(coll)
    for _ in range(2):
        legacy_service(coll)  # a coroutine calls legacy sync code
    await converted_but_slow(coll)
    await asyncio.gather(pure_cpu(), pure_cpu())
    for _ in range(5):
        await converted_and_fast(coll)


def sites() -> dict[str, int]:
    """Line number of each ``# site:`` comment in this file."""
    found = {}
    with open(__file__, encoding="utf-8") as source:
        for number, text in enumerate(source, 1):
            if "# site: " in text:
                found[text.split("# site: ")[1].strip()] = number
    return found

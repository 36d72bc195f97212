"""The fairness budget: how much green code may run before the loop gets a turn.

When replies are already buffered, a resumed greenlet runs a whole PyMongo
operation without parking, and one loop iteration can resume dozens of them
back to back. Green code may run about ``_SLICE_BUDGET`` seconds (wall time
spent inside greenlets, per thread) before the loop gets a whole iteration to
itself; greenlets resumed after that wait for it, so timers and other requests
are served in between (docs/architecture.md, "Decisions").
"""

from __future__ import annotations

import asyncio
import threading
from asyncio import AbstractEventLoop
from collections.abc import Callable
from time import perf_counter
from typing import Any

from motorpatch._stats import _Counters, counters

__all__ = ["_SLICE_BUDGET", "_run_slice", "_slice", "_wait_for_next_slice"]

_SLICE_BUDGET = 0.002


class _Slice(threading.local):
    spent = 0.0
    armed: AbstractEventLoop | None = None  # the loop on which a reset is scheduled


_slice = _Slice()


def _new_iteration() -> None:
    _slice.spent = 0.0
    _slice.armed = None


def _run_slice(counted: _Counters, resume: Callable[..., Any], *args: Any) -> Any:
    """Resume a greenlet via ``resume`` and charge its time to the current slice."""
    start = perf_counter()
    try:
        return resume(*args)
    finally:
        spent = perf_counter() - start
        _slice.spent += spent
        counted.green_seconds += spent


async def _wait_for_next_slice(loop: AbstractEventLoop) -> None:
    """Once green code has run ``_SLICE_BUDGET`` seconds, let the loop run a whole iteration.

    The budget is reset by a callback scheduled ahead of every greenlet deferred
    here, so the deferred ones resume (FIFO) in the next iteration, after the
    timers and I/O callbacks that were due. Only an exhausted budget costs an
    extra iteration: none is added per operation.
    """
    counters().deferrals += 1
    while _slice.spent >= _SLICE_BUDGET:
        # Arm a reset unless one is queued on this loop already. Re-checked on
        # every pass: greenlets resumed after the last reset may have spent the
        # budget again, and a reset armed on another loop (one that stopped
        # before running it) never comes.
        if _slice.armed is not loop:
            _slice.armed = loop
            loop.call_soon(_new_iteration)
        await asyncio.sleep(0)

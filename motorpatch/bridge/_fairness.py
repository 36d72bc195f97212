"""The fairness budget: how much green code may run before the loop gets a turn.

When replies are already buffered, a resumed greenlet runs a whole PyMongo
operation without parking, and one loop iteration can resume dozens of them
back to back. Green code may run about ``SLICE_BUDGET`` seconds (wall time
spent inside greenlets, per thread) before the loop gets a whole iteration to
itself; greenlets resumed after that wait for it, so timers and other requests
are served in between (docs/architecture.md#a-time-budget-per-loop-iteration).
"""

from __future__ import annotations

import threading
from asyncio import AbstractEventLoop, Future
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from motorpatch.bridge import _state
from motorpatch.bridge._state import Counters, counters

__all__ = ["SLICE_BUDGET", "budget", "new_iteration", "run_slice", "wait_for_next_slice"]

# Measured against 0.5 and 2 ms: docs/architecture.md#a-time-budget-per-loop-iteration
SLICE_BUDGET = 0.001


class _Queue:
    """Callers deferred on one loop, in arrival order, and how many were woken and not yet run."""

    __slots__ = ("callers", "requeued", "woken")

    def __init__(self) -> None:
        self.callers: deque[Future[None]] = deque()
        self.woken = 0
        self.requeued = 0  # callers of the last batch put back at the head, in order


class _Budget(threading.local):
    """This thread's budget: what green code has spent since the last reset, and who waits."""

    spent = 0.0  # green seconds run since the last reset
    resumes = 0  # greenlet resumes since the last reset
    per_resume = 0.0002  # running estimate of the seconds a resume takes
    armed: AbstractEventLoop | None = None  # the loop on which a reset is queued

    def __init__(self) -> None:
        self.waiting: dict[AbstractEventLoop, _Queue] = {}


budget = _Budget()


def new_iteration(loop: AbstractEventLoop) -> None:
    """Reset the budget; wake the next batch of deferred callers once the last one has run.

    A batch woken here runs in the next iteration (a Task step is always one
    iteration away), right after the next reset, which is queued before it: so
    it starts on a fresh budget. Only as many are woken as the budget is
    expected to hold, and none until the previous batch has run or re-queued,
    so nobody polls and the order of arrival is kept.
    """
    state = budget
    if state.resumes:
        state.per_resume = (state.per_resume + state.spent / state.resumes) / 2
    state.spent = 0.0
    state.resumes = 0
    state.armed = None
    queue = state.waiting.get(loop)
    if queue is None:
        return
    if not queue.callers and not queue.woken:
        del state.waiting[loop]
        return
    state.armed = loop
    loop.call_soon(new_iteration, loop)
    if queue.woken:
        return
    batch = max(1, int(SLICE_BUDGET / max(state.per_resume, 1e-6)))
    queue.requeued = 0
    while queue.callers and batch:
        fut = queue.callers.popleft()
        if not fut.done():  # a cancelled caller left its place
            fut.set_result(None)
            queue.woken += 1
            batch -= 1


def run_slice(counted: Counters, resume: Callable[..., Any], *args: Any) -> Any:
    """Resume a greenlet via ``resume`` and charge its time to the current slice."""
    start = perf_counter()
    try:
        return resume(*args)
    finally:
        spent = perf_counter() - start
        budget.spent += spent
        budget.resumes += 1
        counted.green_seconds += spent
        if spent > _state.stall_threshold:  # inf unless the audit or a test listens
            _state.stall_hook(getattr(resume, "__self__", None), spent)


async def wait_for_next_slice(loop: AbstractEventLoop) -> None:
    """Once green code has run ``SLICE_BUDGET`` seconds, wait for a later loop iteration.

    Callers queue in arrival order; resets (a callback queued on the loop)
    wake them in batches, after the timers and I/O callbacks that were due.
    A caller woken into a slice that is already spent keeps its place at the
    head of the queue. Only an exhausted budget costs an extra iteration.
    """
    counters().deferrals += 1
    first = True
    while budget.spent >= SLICE_BUDGET:
        queue = budget.waiting.get(loop)
        if queue is None:
            for other in [o for o in budget.waiting if o.is_closed()]:
                del budget.waiting[other]
            queue = budget.waiting[loop] = _Queue()
        fut = loop.create_future()
        if first:
            queue.callers.append(fut)
            first = False
        else:  # back at the head, behind the others of its batch put back before it
            queue.callers.insert(queue.requeued, fut)
            queue.requeued += 1
        # Arm a reset unless one is queued on this loop already (one armed on a
        # loop that stopped before running it never comes).
        if budget.armed is not loop:
            budget.armed = loop
            loop.call_soon(new_iteration, loop)
        try:
            await fut
        finally:
            if fut.done() and not fut.cancelled():  # it was woken: its turn is taken
                queue.woken -= 1

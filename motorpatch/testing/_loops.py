"""Running a test as green code, and green calls abandoned on closed loops.

``run_green`` runs a synchronous function as green code on a fresh loop
(asyncio's or uvloop's) and, like ``asyncio.run``, cancels and awaits every
task still pending before the loop closes, so no green call outlives it.

``abandoned()`` finds green calls still parked on a loop that was closed
without cancelling them (a loop closed by hand, or by a test framework that
does not cancel): each keeps its pooled connection and pool slot for good.
``end()`` unwinds them on this thread (their ``finally`` blocks run; PyMongo
discards the interrupted connection and frees the slot). The plugin does both
between tests, where no other code of this thread is running.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from greenlet import GreenletExit, getcurrent
from greenlet import error as GreenletError

import motorpatch
from motorpatch.bridge import abandoned_on_closed_loops

__all__ = ["abandoned", "describe", "end", "run_green"]

LOOPS = ("asyncio", "uvloop")


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "asyncio":
        return asyncio.new_event_loop
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop  # type: ignore[no-any-return]
    raise ValueError(
        f"@pytest.mark.green(loop={kind!r}): unknown loop; use one of {', '.join(LOOPS)}."
    )


def run_green(fn: Callable[..., Any], kwargs: dict[str, Any], loop: str = "asyncio") -> Any:
    """Run ``fn(**kwargs)`` as green code on a new loop; cancel what is left before closing."""

    async def main() -> Any:
        return await motorpatch.green(fn)(**kwargs)

    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        return runner.run(main())


_reported: weakref.WeakSet[Any] = weakref.WeakSet()


def abandoned() -> list[Any]:
    """Green calls (greenlets) still parked on a closed loop, not reported before."""
    found = [gl for gl in abandoned_on_closed_loops() if gl not in _reported]
    _reported.update(found)
    return found


def describe(task: Any) -> str:
    fn = getattr(task, "motorpatch_fn", None)
    name = getattr(fn, "__qualname__", None) or "a green call"
    return f"{name} (parked on {task.motorpatch_parked or 'its start'})"


def end(task: Any) -> bool:
    """Unwind an abandoned green call on this thread; False if it belongs to another thread."""
    try:
        task.throw(GreenletExit)
    except GreenletError:
        return False  # another thread's greenlet: it can only be ended there
    except BaseException:  # its unwinding raised: it is over all the same
        pass
    task.motorpatch_busy = False
    return task.dead or task.parent is getcurrent()

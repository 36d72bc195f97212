"""``assert_loop_responsive``: fail when the event loop stalls longer than a limit in a block.

Two witnesses, so that every stall is seen and, where motorpatch can tell,
named: a ticker on the running loop (a timer re-armed every few
milliseconds; its lateness is how long the loop could not run callbacks,
whatever held it), and the audit's hooks, which name the call site of a
green stretch that held the loop and of a blocking PyMongo operation run
outside green code. Needs no pytest.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio import _get_running_loop as _running_loop
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from greenlet import getcurrent

from motorpatch import _recorder as _record

__all__ = ["LoopWatch", "assert_loop_responsive", "watching"]

_KIND_TEXT = {
    "blocking": "a PyMongo operation outside green code (decorate its caller with "
    "@motorpatch.green and await it)",
    "stall": "green code that ran without waiting (split the CPU work, or move it to a "
    "thread with motorpatch.await_(asyncio.to_thread(...)))",
}


@dataclass
class LoopWatch:
    """What :func:`assert_loop_responsive` saw; its ``worst`` and ``lag_ms`` are read after."""

    max_ms: float
    allow_blocking: bool = False
    lag_ms: float = 0.0  # the ticker's largest lateness (0 where no loop was running)
    worst: tuple[str, _record.Site, float] | None = None  # (kind, site, seconds) of the worst
    events: list[tuple[str, _record.Site, float]] = field(default_factory=list)
    blocking: list[tuple[_record.Site, float]] = field(default_factory=list)

    def _heard(self, kind: str, site: _record.Site, seconds: float) -> None:
        if kind == "blocking":
            self.blocking.append((site, seconds))
            if seconds * 1000 <= self.max_ms:
                return
        self.events.append((kind, site, seconds))
        if self.worst is None or seconds > self.worst[2]:
            self.worst = (kind, site, seconds)

    def message(self) -> str | None:
        """Why the block failed, or None if the loop stayed responsive."""
        worst_ms = max(self.lag_ms, self.worst[2] * 1000 if self.worst else 0.0)
        if worst_ms <= self.max_ms:
            if self.blocking and not self.allow_blocking:
                (file, line, function), seconds = max(self.blocking, key=lambda b: b[1])
                sites = len({site for site, _ in self.blocking})
                return (
                    f"{len(self.blocking)} PyMongo operation(s) ran on the loop's thread outside "
                    f"green code ({sites} call site(s)); each holds the loop for a whole round "
                    f"trip to the server, {seconds * 1000:.1f} ms here at worst, more across a "
                    f"network: the longest at {file}:{line} in {function}: "
                    f"{_KIND_TEXT['blocking']}; allow_blocking=True accepts them"
                )
            return None
        text = f"the event loop stalled for {worst_ms:.1f} ms (limit {self.max_ms:g} ms)"
        if self.worst is None:
            return text + (
                ", held by code motorpatch does not see (not PyMongo, not green code: a "
                "time.sleep, CPU work or another blocking library in a coroutine?)"
            )
        kind, (file, line, function), seconds = self.worst
        return (
            f"{text}; worst: {seconds * 1000:.1f} ms at {file}:{line} in {function}, "
            f"{_KIND_TEXT[kind]}; {len(self.events)} stall(s) over the limit in the block"
        )


class _Ticker:
    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.max_lag = 0.0
        self.due = loop.time() + interval
        self.handle = loop.call_at(self.due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        self.max_lag = max(self.max_lag, now - self.due)
        self.due = now + self.interval
        self.handle = self.loop.call_at(self.due, self._tick)

    def stop(self) -> tuple[float, float]:
        """(largest lateness seen, lateness of the stretch still going on now)."""
        self.handle.cancel()
        return self.max_lag, self.loop.time() - self.due


def assert_loop_responsive(
    max_ms: float = 50.0, *, allow_blocking: bool = False
) -> AbstractContextManager[LoopWatch]:
    """Fail (``AssertionError``) if the event loop stalls longer than ``max_ms`` in the block.

    Use it in green code, or in a coroutine, on the loop's thread. The error
    names the worst stall: its length, and, when motorpatch can tell, its call
    site (a green stretch that did not wait, or a PyMongo operation run
    outside green code). Outside a running loop only those two are seen.

    A PyMongo operation run outside green code on the loop's thread fails the
    block even when it was quick (a local test server answers in a
    millisecond; across a network it holds the loop for the round trip),
    unless ``allow_blocking`` is true.

    :raises ValueError: ``max_ms`` is not a positive number.
    """
    if not isinstance(max_ms, int | float) or isinstance(max_ms, bool) or not max_ms > 0:
        raise ValueError(
            f"assert_loop_responsive(max_ms={max_ms!r}): max_ms must be a positive number of "
            "milliseconds, for example assert_loop_responsive(max_ms=50)."
        )
    return watching(max_ms, None, allow_blocking)


@contextmanager
def watching(
    max_ms: float, owner: Callable[..., Any] | None, allow_blocking: bool = False
) -> Iterator[LoopWatch]:
    """``assert_loop_responsive``; a stall still going on at the end of the block is put
    at the user frame leaving the block, or, if none (the plugin's own block around a whole
    test), at ``owner``'s ``def`` line."""
    watch = LoopWatch(float(max_ms), allow_blocking)
    limit = max_ms / 1000
    loop = _running_loop()
    ticker = _Ticker(loop, min(limit / 4, 0.005)) if loop is not None else None
    _record.watch(watch._heard, limit)
    failed = True
    try:
        yield watch
        failed = False
    finally:
        _record.unwatch(watch._heard)
        if ticker is not None:
            seen, ongoing = ticker.stop()
            watch.lag_ms = max(seen, ongoing) * 1000
            if ongoing > limit and getattr(getcurrent(), "motorpatch_loop", None) is loop:
                # Green code that has not given the loop back since its last wait: the
                # stretch ends with the block, at the line that leaves it.
                user, _ = _record.call_site(sys._getframe(2))
                code = getattr(owner, "__code__", None)
                if user is None and code is not None:
                    site = (code.co_filename, code.co_firstlineno, code.co_qualname)
                else:
                    site = _record.site_of(user)
                watch._heard("stall", site, ongoing)
    if not failed:
        message = watch.message()
        if message is not None:
            raise AssertionError(f"assert_loop_responsive: {message}")

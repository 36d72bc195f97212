"""Readiness waits on a raw file descriptor: parked in green code, poll() elsewhere.

This is the one place where the socket shim waits. In green code the wait
registers a one-shot reader/writer callback on the *current* loop (the layer
Tornado's ``IOLoop.add_handler`` and ``IOStream`` stand on) that switches
straight back into the parked greenlet; the registration is removed before
the wait returns (or as soon as a wake-up is deferred by the fairness budget,
so a ready descriptor is not reported again in every iteration meanwhile), so
no loop keeps a claim on the descriptor between operations and the same
socket can serve another loop or a plain thread next.
Outside green code the wait is a plain blocking ``poll()``, which is what
CPython's own socket timeouts do.
"""

from __future__ import annotations

import select
import time
from asyncio import AbstractEventLoop

from motorpatch.bridge import green_loop, new_waker, park_direct

__all__ = ["wait_fd"]

_POLLIN = select.POLLIN | select.POLLPRI
_POLLOUT = select.POLLOUT


def _wait_green(
    loop: AbstractEventLoop, fd: int, write: bool, timeout: float | None, reason: str | None
) -> bool:
    # The loop's callback resumes the greenlet itself (no future, no task step).
    waker = new_waker(fd, write)
    if write:
        loop.add_writer(fd, waker, True)
    else:
        loop.add_reader(fd, waker, True)
    try:
        if reason is None:
            reason = "socket write" if write else "socket read"
        return bool(park_direct(waker, reason, timeout))
    finally:
        waker.unregister()  # unless the waker did already (a deferred wake-up)


def _wait_blocking(fd: int, write: bool, timeout: float | None) -> bool:
    poller = select.poll()
    poller.register(fd, _POLLOUT if write else _POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
        if poller.poll(ms):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def wait_fd(fd: int, *, write: bool, timeout: float | None, reason: str | None = None) -> bool:
    """Wait until ``fd`` is readable (or writable); False if ``timeout`` passed first.

    Parks the current greenlet when called from green code, else blocks the
    thread in ``poll()``. Errors and hang-ups count as ready, so the next
    socket call reports them as the stdlib would. ``reason`` is what
    ``motorpatch.stats()`` reports while parked (default: socket read/write).
    """
    loop = green_loop()
    if loop is not None:
        return _wait_green(loop, fd, write, timeout, reason)
    return _wait_blocking(fd, write, timeout)

"""Patches of ``pymongo.synchronous.network`` (PyMongo 4.9-4.10 only): the read wait.

Before PyMongo 4.11, every read first calls ``wait_for_read(conn, deadline)``,
which blocks the thread in ``SocketChecker.select`` (``poll()``) for up to
0.5 s at a time, checking the connection's cancel context in between. In
green code the same loop parks the greenlet on the socket's readability
instead; elsewhere the original runs. From 4.11 on, CPython reads go straight
to ``recv_into`` with short socket timeouts, which the green socket already
parks on, so nothing is patched there.
"""

from __future__ import annotations

import time
from asyncio import AbstractEventLoop
from collections.abc import Callable
from typing import Any

from pymongo.errors import _OperationCancelled

from motorpatch.patches._gates import Args, Kwargs, green_only
from motorpatch.patches._registry import Patch
from motorpatch.socket_shim import wait_fd

__all__ = ["PATCHES"]

_POLL_TIMEOUT = 0.5  # PyMongo's slice between cancel-context checks


def _wait_for_read(
    loop: AbstractEventLoop, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs
) -> Any:
    conn, deadline = args
    sock = conn.conn
    if sock.fileno() == -1:  # closed by hand: let the read report it, as PyMongo does
        return None
    timed_out = False
    while True:
        if hasattr(sock, "pending") and sock.pending() > 0:  # TLS bytes already decrypted
            readable = True
        else:
            timeout = _POLL_TIMEOUT
            if deadline:
                remaining = deadline - time.monotonic()
                timed_out = remaining <= 0
                timeout = max(min(remaining, _POLL_TIMEOUT), 0)
            readable = wait_fd(sock.fileno(), write=False, timeout=timeout)
        if conn.cancel_context.cancelled:
            raise _OperationCancelled("operation cancelled")
        if readable:
            return None
        if timed_out:
            raise TimeoutError("timed out")


PATCHES = [
    Patch(
        "pymongo.synchronous.network",
        "wait_for_read",
        wrapper=green_only(_wait_for_read),
        why="the wait before each read parks instead of polling on the loop's thread",
        until=(4, 10),
        accepts=("conn", "deadline"),
    ),
]

"""Patches of ``pymongo.synchronous.pool``: connection set-up, checkout and pool waits.

- ``_configured_socket_interface`` (4.12+, imported by name from
  ``pool_shared``) or ``_configured_socket`` (4.9-4.11): in green code,
  connect, resolve and handshake with the green socket shim; elsewhere
  (monitor threads, plain threads, start-up code) the original runs.
- ``Pool._get_conn``: in green code, first yield while green waiters that
  were notified (handed a slot or a connection) have not run yet, so no
  greenlet, not even the one that just checked in, barges past them; then a
  connection whose socket is still a plain blocking socket (made by start-up
  code or a plain thread) gets it wrapped in a :class:`GreenSocket` before
  use, so it can never block the loop. Outside green code, the
  blocking-call detector runs first.
- ``_cond_wait`` (4.11+ imported by name from ``pymongo.lock`` and given a
  timeout; 4.9-4.10 pool's own, given a deadline): waits for a pool slot
  (maxPoolSize) and for a connection-establishment slot (maxConnecting) park
  the greenlet instead of blocking the loop's thread.
"""

from __future__ import annotations

import time
from typing import Any

from motorpatch._condition import green_cond_wait, pending_handoffs
from motorpatch._detector import check_blocking
from motorpatch._greenlets import _green_loop
from motorpatch._parking import _yield_now
from motorpatch.patches._registry import Patch
from motorpatch.socket_shim import (
    GreenSocket,
    green_configured_socket,
    green_configured_socket_interface,
)
from motorpatch.socket_shim._pymongo import HAS_NETWORKING_INTERFACE

__all__ = ["PATCHES", "cond_wait_wrapper"]

_MODULE = "pymongo.synchronous.pool"


def _configured_socket_interface(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if _green_loop() is None:
        return wrapped(*args, **kwargs)
    return green_configured_socket_interface(*args, **kwargs)


def _configured_socket(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if _green_loop() is None:
        return wrapped(*args, **kwargs)
    return green_configured_socket(*args, **kwargs)


# Loop iterations a checkout defers to woken waiters at most (a waiter woken on
# another thread's loop may be slow to run).
_MAX_DEFER = 100


def _get_conn(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    loop = _green_loop()
    if loop is None:
        check_blocking()
        return wrapped(*args, **kwargs)
    # A slot or connection just handed to a parked waiter is that waiter's: let it
    # run first, or a greenlet that happens to be scheduled ahead of it barges in.
    for _ in range(_MAX_DEFER):
        if not (
            pending_handoffs(instance.size_cond) or pending_handoffs(instance._max_connecting_cond)
        ):
            break
        _yield_now(loop)
    conn = wrapped(*args, **kwargs)
    # 4.12+: Connection -> NetworkingInterface -> socket; 4.9-4.11: Connection -> socket.
    holder = conn.conn if HAS_NETWORKING_INTERFACE else conn
    if type(holder.conn) is not GreenSocket:
        holder.conn = GreenSocket(holder.conn)
    return conn


def _condition_timeout(condition: Any, timeout: float | None) -> tuple[Any, float | None]:
    return condition, timeout


def cond_wait_wrapper(reason: str) -> Any:
    """Wrapper for ``_cond_wait(condition, timeout)``, shared with the topology patch."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        loop = _green_loop()
        if loop is None:
            check_blocking()
            return wrapped(*args, **kwargs)
        return green_cond_wait(loop, *_condition_timeout(*args, **kwargs), reason)

    return wrapper


def _cond_wait_deadline(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wrapper for PyMongo 4.9-4.10's ``pool._cond_wait(condition, deadline)``."""
    loop = _green_loop()
    if loop is None:
        check_blocking()
        return wrapped(*args, **kwargs)
    condition, deadline = args
    timeout = deadline - time.monotonic() if deadline else None
    return green_cond_wait(loop, condition, timeout)


PATCHES = [
    Patch(
        _MODULE,
        "_configured_socket_interface",
        wrapper=_configured_socket_interface,
        why="green DNS, connect and TLS handshake for new connections",
        since=(4, 12),
        accepts=("address", "options", "ssl_session_cache"),
    ),
    Patch(
        _MODULE,
        "_configured_socket",
        wrapper=_configured_socket,
        why="green DNS, connect and TLS handshake for new connections",
        until=(4, 11),
        accepts=("address", "options"),
    ),
    Patch(
        _MODULE,
        "Pool._get_conn",
        wrapper=_get_conn,
        why="wrap plain sockets before green use; detect blocking calls on the loop",
    ),
    Patch(
        _MODULE,
        "_cond_wait",
        wrapper=cond_wait_wrapper("pool wait"),
        why="maxPoolSize and maxConnecting waits park instead of blocking",
        since=(4, 11),
        accepts=("condition", "timeout"),
    ),
    Patch(
        _MODULE,
        "_cond_wait",
        wrapper=_cond_wait_deadline,
        why="maxPoolSize and maxConnecting waits park instead of blocking",
        until=(4, 10),
        accepts=("condition", "deadline"),
    ),
]

"""Patches of ``pymongo.synchronous.pool``: connection set-up, checkout and pool waits.

- ``_configured_socket_interface`` (imported by name from ``pool_shared``):
  in green code, connect, resolve and handshake with the green socket shim;
  elsewhere (monitor threads, plain threads, start-up code) the original runs.
- ``Pool._get_conn``: in green code, first yield while green waiters that
  were notified (handed a slot or a connection) have not run yet, so no
  greenlet, not even the one that just checked in, barges past them; then a
  connection whose socket is still a plain blocking socket (made by start-up
  code or a plain thread) gets it wrapped in a :class:`GreenSocket` before
  use, so it can never block the loop. Outside green code, the
  blocking-call detector runs first.
- ``_cond_wait`` (imported by name from ``pymongo.lock``): waits for a pool
  slot (maxPoolSize) and for a connection-establishment slot (maxConnecting)
  park the greenlet instead of blocking the loop's thread.
"""

from __future__ import annotations

from typing import Any

from motorpatch._bridge import _green_loop, _yield_now
from motorpatch._condition import green_cond_wait, pending_handoffs
from motorpatch._detector import check_blocking
from motorpatch.patches._registry import Patch
from motorpatch.socket_shim import GreenSocket, green_configured_socket_interface

__all__ = ["PATCHES", "cond_wait_wrapper"]

_MODULE = "pymongo.synchronous.pool"


def _configured_socket_interface(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if _green_loop() is None:
        return wrapped(*args, **kwargs)
    return green_configured_socket_interface(*args, **kwargs)


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
            pending_handoffs(instance.size_cond)
            or pending_handoffs(instance._max_connecting_cond)
        ):
            break
        _yield_now(loop)
    conn = wrapped(*args, **kwargs)
    iface = conn.conn  # NetworkingInterface
    if type(iface.conn) is not GreenSocket:
        iface.conn = GreenSocket(iface.conn)
    return conn


def cond_wait_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wrapper for ``_cond_wait(condition, timeout)``, shared with the topology patch."""
    loop = _green_loop()
    if loop is None:
        check_blocking()
        return wrapped(*args, **kwargs)
    return green_cond_wait(loop, *args, **kwargs)


PATCHES = [
    Patch(
        _MODULE,
        "_configured_socket_interface",
        wrapper=_configured_socket_interface,
        why="green DNS, connect and TLS handshake for new connections",
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
        wrapper=cond_wait_wrapper,
        why="maxPoolSize and maxConnecting waits park instead of blocking",
    ),
]

"""Patches of ``pymongo.synchronous.pool``: connection set-up, checkout and pool waits.

- ``_configured_socket_interface`` (4.12+, imported by name from
  ``pool_shared``) or ``_configured_socket`` (4.9-4.11): in green code,
  connect, resolve and handshake with the green socket shim; elsewhere
  (monitor threads, plain threads, start-up code) the original runs.
- ``Pool._get_conn``: in green code, a checkout that finds every free pool
  slot (maxPoolSize), or every idle connection and connection-set-up slot
  (maxConnecting), already promised to a notified green waiter
  (``pending_handoffs``) joins the back of that condition's wait queue
  instead of taking it, so no greenlet, not even the one that just checked
  in, barges past the waiter (FIFO hand-over). It parks once per wait and is
  woken once, by the checkin or finished connection that frees one: no
  polling. It waits with PyMongo's own checkout deadline, and the waits
  PyMongo then makes are held to it. A connection whose socket is still a
  plain blocking socket (made by start-up code or a plain thread) gets it
  wrapped in a :class:`GreenSocket` before use, so it can never block the
  loop. Outside green code, the blocking-call detector runs first, and the
  pool gets a ``checkin`` of its own (an instance attribute, removed by
  ``uninstall()``) that ends the blocking operation when its connection comes
  back, for ``stats()`` and the audit; pools never used that way pay nothing.
- ``_cond_wait`` (4.11+ imported by name from ``pymongo.lock`` and given a
  timeout; 4.9-4.10 pool's own, given a deadline): waits for a pool slot
  (maxPoolSize) and for a connection-establishment slot (maxConnecting) park
  the greenlet instead of blocking the loop's thread.
"""

from __future__ import annotations

import time
import weakref
from asyncio import AbstractEventLoop
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from pymongo import _csot
from pymongo.synchronous.pool import PoolState  # type: ignore[attr-defined]  # 4.9-4.20 have it

from motorpatch._recorder import end_blocking, operation_open
from motorpatch.bridge import green_cond_wait, hold, pending_handoffs, unhold
from motorpatch.patches._gates import Args, Kwargs, cond_wait_wrapper, green_only
from motorpatch.patches._registry import Patch
from motorpatch.socket_shim import (
    HAS_NETWORKING_INTERFACE,
    GreenSocket,
    green_configured_socket,
    green_configured_socket_interface,
)

__all__ = ["PATCHES"]

# Each wrapper below is a gate's green branch: (loop, wrapped, instance, args, kwargs).

_MODULE = "pymongo.synchronous.pool"


def _configured_socket_interface(
    loop: AbstractEventLoop, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs
) -> Any:
    return green_configured_socket_interface(*args, **kwargs)


def _configured_socket(
    loop: AbstractEventLoop, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs
) -> Any:
    return green_configured_socket(*args, **kwargs)


# The deadline of a checkout that queued in ``_queue_for_checkout``: PyMongo computes
# its own a moment later, so its waits in the same checkout are held to this one.
_checkout_deadline: ContextVar[float | None] = ContextVar("motorpatch_checkout_deadline")


def _get_conn(
    loop: AbstractEventLoop, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs
) -> Any:
    token = None
    if _no_free_slot(instance) or _no_free_connection(instance):
        token = _checkout_deadline.set(_queue_for_checkout(loop, instance))
    try:
        conn = wrapped(*args, **kwargs)
    finally:
        if token is not None:
            _checkout_deadline.reset(token)
    # 4.12+: Connection -> NetworkingInterface -> socket; 4.9-4.11: Connection -> socket.
    holder = conn.conn if HAS_NETWORKING_INTERFACE else conn
    if type(holder.conn) is not GreenSocket:
        holder.conn = GreenSocket(holder.conn)
    return conn


def _no_free_slot(pool: Any) -> bool:
    """Every free pool slot (maxPoolSize) is promised to a woken waiter, or there is none."""
    requests: int = pool.requests + pending_handoffs(pool.size_cond)
    limit: int = pool.max_pool_size
    return requests >= limit


def _no_free_connection(pool: Any) -> bool:
    """Every idle connection and free connection-set-up slot (maxConnecting) is promised
    to a woken waiter, or there is none."""
    free: int = len(pool.conns) + max(0, pool._max_connecting - pool._pending)
    return pending_handoffs(pool._max_connecting_cond) >= free


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _queue_for_checkout(loop: AbstractEventLoop, pool: Any) -> float | None:
    """Wait in the pool's queues until a slot and a connection are free and not promised.

    First for a pool slot (maxPoolSize), then, keeping that slot promised to
    this greenlet, for an idle connection or a connection-set-up slot
    (maxConnecting): each a single park on the pool's own condition, woken
    by the ``notify()`` of a checkin or of a finished connection, in FIFO
    order with every other waiter. No polling: while nothing is free, nothing
    runs (docs/architecture.md#a-checkout-waiting-for-maxconnecting-parks-once-instead-of-polling).

    Returns the deadline waited with, PyMongo's own (CSOT's, else
    waitQueueTimeoutMS from now, else None; the same in 4.9-4.20). On timeout it
    returns too: PyMongo's own wait then times out at once and raises what plain
    PyMongo raises. A pool that is not ready is left to PyMongo to report.
    """
    if _csot.get_timeout():
        deadline: float | None = _csot.get_deadline()
    elif pool.opts.wait_queue_timeout:
        deadline = time.monotonic() + pool.opts.wait_queue_timeout
    else:
        deadline = None
    size_cond, conn_cond = pool.size_cond, pool._max_connecting_cond
    held = None
    finished = False
    try:
        with size_cond:
            while pool.state == PoolState.READY and _no_free_slot(pool):
                if not green_cond_wait(loop, size_cond, _left(deadline)):
                    finished = True
                    return deadline
            if pool.state != PoolState.READY or not _no_free_connection(pool):
                finished = True
                return deadline
            held = hold(size_cond, loop)  # newcomers queue behind it meanwhile
        with conn_cond:
            while pool.state == PoolState.READY and _no_free_connection(pool):
                if not green_cond_wait(loop, conn_cond, _left(deadline)):
                    break
        finished = True
    finally:
        if held is not None:
            with size_cond:
                unhold(size_cond, held)
                if not finished and not _no_free_slot(pool):
                    size_cond.notify()  # cancelled: the slot held for it goes on
    return deadline


def _held_to_checkout_deadline(timeout: float | None) -> float | None:
    deadline = _checkout_deadline.get(None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    return left if timeout is None else min(timeout, left)


def _cond_wait_deadline(
    loop: AbstractEventLoop, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs
) -> Any:
    """Green branch for PyMongo 4.9-4.10's ``pool._cond_wait(condition, deadline)``."""
    condition, deadline = args
    timeout = deadline - time.monotonic() if deadline else None
    return green_cond_wait(loop, condition, _held_to_checkout_deadline(timeout))


_hooked: weakref.WeakSet[Any] = weakref.WeakSet()  # pools given their own checkin


def _hook_checkin(pool: Any) -> None:
    """Give ``pool`` a ``checkin`` that ends this thread's blocking operation, if any."""
    if pool in _hooked:
        return
    original = pool.checkin

    def checkin(conn: Any) -> None:
        try:
            original(conn)
        finally:
            end_blocking()  # the blocking operation on this thread, if any, is over

    pool.checkin = checkin
    _hooked.add(pool)


def _unhook_checkins() -> None:
    for pool in list(_hooked):
        vars(pool).pop("checkin", None)
    _hooked.clear()


def _plain_get_conn(wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs) -> Any:
    """A checkout outside green code, after the detector: time its operation (if one is open)."""
    if operation_open():
        _hook_checkin(instance if instance is not None else args[0])
    try:
        return wrapped(*args, **kwargs)
    except BaseException:
        end_blocking()  # no connection: the operation ends here
        raise


PATCHES = [
    Patch(
        _MODULE,
        "_configured_socket_interface",
        wrapper=green_only(_configured_socket_interface),
        why="green DNS, connect and TLS handshake for new connections",
        since=(4, 12),
        accepts=("address", "options", "ssl_session_cache"),
    ),
    Patch(
        _MODULE,
        "_configured_socket",
        wrapper=green_only(_configured_socket),
        why="green DNS, connect and TLS handshake for new connections",
        until=(4, 11),
        accepts=("address", "options"),
    ),
    Patch(
        _MODULE,
        "Pool._get_conn",
        wrapper=green_only(_get_conn, detect_blocking=True, method=True, plain=_plain_get_conn),
        why="wrap plain sockets before green use; detect blocking calls on the loop",
        undo=_unhook_checkins,
    ),
    Patch(
        _MODULE,
        "_cond_wait",
        wrapper=cond_wait_wrapper("pool wait", _held_to_checkout_deadline),
        why="maxPoolSize and maxConnecting waits park instead of blocking",
        since=(4, 11),
        accepts=("condition", "timeout"),
    ),
    Patch(
        _MODULE,
        "_cond_wait",
        wrapper=green_only(_cond_wait_deadline, detect_blocking=True),
        why="maxPoolSize and maxConnecting waits park instead of blocking",
        until=(4, 10),
        accepts=("condition", "deadline"),
    ),
]

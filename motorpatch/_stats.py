"""``motorpatch.stats()``: a cheap snapshot of what green code is doing right now.

Totals live per thread in the bridge's state leaf
(:mod:`motorpatch.bridge._state`); ``stats()`` sums every thread's. The gauges
(calls in flight, greenlets parked by reason) are read off the live green
greenlets themselves, counting only those whose loop is still open, so a
call abandoned on a closed loop does not count as in flight forever.
"""

from __future__ import annotations

from typing import Any

from motorpatch.bridge import REASONS, SLICE_BUDGET, all_counters, unfinished_on_open_loops

__all__ = ["stats"]


def stats() -> dict[str, Any]:
    """Return a snapshot of motorpatch's activity in this process, as plain JSON-ready data.

    Keys:

    - ``in_flight``: green calls awaited and not yet finished, on every loop
      that is still open (a call queued for its first turn counts).
    - ``parked``: greenlets parked right now, by reason: ``socket read``,
      ``socket write``, ``connect``, ``tls handshake``, ``dns``, ``pool wait``
      (maxPoolSize/maxConnecting), ``server selection``, ``sleep`` (PyMongo's
      back-off), ``thread join``, ``await_`` (your own awaits) and ``yield``
      (giving way to the loop: a zero-length sleep, or green code that has
      spent its time budget for this loop iteration).
    - ``green_calls``: green calls started since the process began.
    - ``blocking_calls``: PyMongo operations (a ``find_one``, one batch of a
      cursor, an ``insert_one``...) started on a running loop's thread
      outside green code, each reported once as a ``BlockingCallWarning``
      (even when the warnings filter shows only the first) or raised as a
      ``GreenContextError``, however many times it waits (server selection,
      then the pool); none are counted in ``blocking="ignore"`` mode.
    - ``budget``: the fairness budget: ``slice_ms`` (green time allowed per
      loop iteration), ``green_seconds`` (time spent running green code) and
      ``deferrals`` (times a greenlet waited for the next loop iteration
      because the slice was spent).

    Costs about a microsecond per green call in flight; safe to call from a
    health endpoint, from any thread.
    """
    every = all_counters()
    live = unfinished_on_open_loops()
    parked = dict.fromkeys(REASONS, 0)
    for gl in live:
        reason = gl.motorpatch_parked
        if reason is not None:
            parked[reason] += 1
    return {
        "in_flight": len(live),
        "parked": parked,
        "green_calls": sum(c.calls for c in every),
        "blocking_calls": sum(c.blocking for c in every),
        "budget": {
            "slice_ms": SLICE_BUDGET * 1000,
            "green_seconds": round(sum(c.green_seconds for c in every), 6),
            "deferrals": sum(c.deferrals for c in every),
        },
    }

"""The greenlet <-> event loop runtime: green calls, and how green code waits.

Generic: it imports nothing from PyMongo, from :mod:`motorpatch.patches` or
from the control plane (``install()``), so it can be read, tested and
reused on its own; everything above it (the socket shim, the patches,
``install()``, ``stats()``) imports it through this face only. The modules
inside, from the bottom up:

- ``_state``: a leaf read by every layer: per-thread counters, the park
  reasons, the installed flag (written by ``install()``/``uninstall()``),
  the stall hook (set by the audit and ``motorpatch.testing``).
- ``_fairness``: the time budget green code may spend per loop iteration.
- ``_greenlets``: green greenlets (the tag, the per-thread pool, the live
  set) and the switch protocol between a greenlet and its driving coroutine.
- ``_parking``: the two ways to wait (``park``, ``park_direct``), the
  ``Waker`` loop callback, ``sleep`` and ``yield_now``.
- ``_condition``: waiting on a ``threading.Condition`` that any thread wakes.
- ``_green``: ``await_`` and the driving coroutine of every green call.
- ``_marker``: the coroutine-function markers web frameworks read.
- ``_fallback``: a green function called where no loop runs (the warning,
  ``allow_plain``, callers that await the result on a loop of their own).
- ``_green_iter``: ``green_iter`` and ``@green`` generator functions.
- ``_decorator``: ``@green``, which chooses between the three paths.
"""

from motorpatch.bridge._condition import green_cond_wait, hold, pending_handoffs, unhold
from motorpatch.bridge._decorator import green
from motorpatch.bridge._fairness import SLICE_BUDGET
from motorpatch.bridge._fallback import allow_plain
from motorpatch.bridge._green import await_
from motorpatch.bridge._green_iter import green_iter
from motorpatch.bridge._greenlets import (
    abandoned_on_closed_loops,
    green_loop,
    unfinished_on_open_loops,
)
from motorpatch.bridge._parking import Waker, new_waker, park, park_direct, sleep, yield_now
from motorpatch.bridge._state import (
    REASONS,
    Counters,
    all_counters,
    counters,
    is_installed,
    set_installed,
    set_stall_hook,
)

__all__ = [
    "REASONS",
    "SLICE_BUDGET",
    "Counters",
    "Waker",
    "abandoned_on_closed_loops",
    "all_counters",
    "allow_plain",
    "await_",
    "counters",
    "green",
    "green_cond_wait",
    "green_iter",
    "green_loop",
    "hold",
    "is_installed",
    "new_waker",
    "park",
    "park_direct",
    "pending_handoffs",
    "set_installed",
    "set_stall_hook",
    "sleep",
    "unfinished_on_open_loops",
    "unhold",
    "yield_now",
]

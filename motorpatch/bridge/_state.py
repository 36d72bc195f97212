"""State every layer reads: counters, park reasons, the installed flag, the stall hook.

A leaf: it imports nothing of motorpatch, so the bridge, the patches, the
detector and ``stats()`` can all read it without importing each other (the
shape of gevent's ``monkey/_state.py``). The control plane (``install()`` and
``uninstall()``) writes the installed flag; the bridge only reads it.

Totals live per thread (each event loop runs on one thread, so the hot path
updates them without a lock); ``stats()`` sums every thread's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "REASONS",
    "Counters",
    "all_counters",
    "counters",
    "is_installed",
    "set_installed",
    "set_stall_hook",
    "stall_hook",
    "stall_threshold",
]

# Why a greenlet is parked: every value ``motorpatch.stats()["parked"]`` reports.
REASONS = (
    "socket read",
    "socket write",
    "connect",
    "tls handshake",
    "dns",
    "pool wait",
    "server selection",
    "sleep",
    "thread join",
    "await_",
    "yield",
)


class Counters:
    """One thread's totals since the process began (read by ``motorpatch.stats()``)."""

    __slots__ = ("blocking", "calls", "deferrals", "green_seconds")

    def __init__(self) -> None:
        self.calls = 0  # green calls started
        self.deferrals = 0  # waits for the next loop iteration (fairness budget spent)
        self.green_seconds = 0.0  # time spent running green code
        self.blocking = 0  # PyMongo operations reported by the blocking-call detector


_all: list[Counters] = []
_all_lock = threading.Lock()
_local = threading.local()


def counters() -> Counters:
    """This thread's counters (created on first use)."""
    try:
        return _local.counters  # type: ignore[no-any-return]
    except AttributeError:
        mine = _local.counters = Counters()
        with _all_lock:
            _all.append(mine)
        return mine


def all_counters() -> list[Counters]:
    """Every thread's counters, for the totals of ``motorpatch.stats()``."""
    with _all_lock:
        return list(_all)


_installed = False


def set_installed(flag: bool) -> None:
    """Record that the patches are applied (``install()``) or removed (``uninstall()``)."""
    global _installed
    _installed = flag


def is_installed() -> bool:
    """Whether the patches are applied: between ``install()`` and ``uninstall()``."""
    return _installed


def _no_hook(greenlet: Any, seconds: float) -> None:
    return None


# Called by the fairness budget's ``run_slice`` with (the green greenlet, seconds) for every
# resume that ran longer than ``stall_threshold`` seconds: infinite while nobody listens,
# so the hot path pays one float comparison. The audit sets both (``set_stall_hook``).
stall_threshold = math.inf
stall_hook: Callable[[Any, float], None] = _no_hook


def set_stall_hook(hook: Callable[[Any, float], None] | None, threshold: float) -> None:
    """Call ``hook(greenlet, seconds)`` for green stretches over ``threshold`` s (None: stop)."""
    global stall_threshold, stall_hook
    stall_hook = hook if hook is not None else _no_hook
    stall_threshold = threshold if hook is not None else math.inf

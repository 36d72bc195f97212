"""The audit's recorder: blocking PyMongo operations and green stalls, per call site.

Imported by the detector, the pool patch, :mod:`motorpatch.audit` and
:mod:`motorpatch.testing`; it imports only the bridge's face (to set the
stall hook):

- ``begin_blocking(frame)``: the detector saw PyMongo wait on a running loop's
  thread outside green code. Waits of one *operation* (a server-selection wait
  and then the checkout of one ``find_one``) share its outermost PyMongo frame;
  only the first opens the operation, so operations are counted, not waits.
- ``end_blocking()``: the operation's connection went back to the pool (or its
  checkout failed); the time since it opened is how long the loop was blocked.
- ``stall(greenlet, seconds)``: green code ran ``seconds`` without giving the
  loop back, longer than the bridge's stall threshold (set here: infinite while
  neither the audit nor a watch listens, so the hot path pays one float
  comparison).

Which frame is the call site is :mod:`motorpatch._sites`'s to say (its names
are passed on here). Nothing is recorded per call site while the audit is off; operations are
still told apart, for ``stats()["blocking_calls"]``. Watches
(``motorpatch.testing.assert_loop_responsive``) hear of the same events
while they are on, whether the audit records or not.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from time import perf_counter
from types import FrameType
from typing import Any

from motorpatch._sites import Site, call_site, entry_point, site_of
from motorpatch.bridge import set_stall_hook

__all__ = [
    "Site",
    "audit_threshold",
    "begin_blocking",
    "call_site",
    "discard",
    "end_blocking",
    "entry_point",
    "operation_open",
    "recording",
    "reset",
    "set_recording",
    "site_of",
    "snapshot",
    "stall",
    "unwatch",
    "watch",
]

recording = False
_audit_threshold = math.inf
# Watches (motorpatch.testing.assert_loop_responsive): called with (kind, site, seconds)
# for every blocking operation and every stall over their own threshold.
Watch = Callable[[str, "Site", float], None]
_watches: dict[Watch, tuple[float, int]] = {}  # watch -> (stall threshold, its thread)

class _Entry:
    __slots__ = ("count", "entries", "max", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.entries: dict[Site, int] = {}

    def add(self, seconds: float, entry: Site | None) -> None:
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        if entry is not None:
            self.entries[entry] = self.entries.get(entry, 0) + 1


_sites: dict[tuple[str, Site], _Entry] = {}
_lock = threading.Lock()


def _add(kind: str, site: Site, seconds: float, entry: Site | None = None) -> None:
    with _lock:
        record = _sites.get((kind, site))
        if record is None:
            record = _sites[(kind, site)] = _Entry()
        record.add(seconds, entry)


def reset() -> None:
    """Forget every recorded call site (a forked child starts its own report)."""
    with _lock:
        _sites.clear()


def snapshot() -> list[dict[str, Any]]:
    """Every call site recorded so far, as report entries, by total time, largest first."""
    _close_stale()
    with _lock:
        items = sorted(_sites.items(), key=lambda kv: (-kv[1].total, kv[0][1][0], kv[0][1][1]))
    return [
        {
            "kind": kind,
            "file": site[0],
            "line": site[1],
            "function": site[2],
            "count": e.count,
            "blocked_seconds_total": round(e.total, 6),
            "blocked_seconds_max": round(e.max, 6),
            **(
                {
                    "entry_points": [
                        {"file": f, "line": n, "function": fn, "count": c}
                        for (f, n, fn), c in sorted(e.entries.items(), key=lambda kv: -kv[1])
                    ]
                }
                if kind == "blocking"
                else {}
            ),
        }
        for (kind, site), e in items
    ]


# -- blocking operations -----------------------------------------------------------------


class _Open(threading.local):
    """This thread's blocking operation in progress, if any."""

    frame: FrameType | None = None  # its outermost PyMongo frame (held until it ends)
    site: Site | None = None
    entry: Site | None = None  # its entry point (see entry_point), when recording
    start = 0.0
    last = 0.0


_open = _Open()


def begin_blocking(frame: FrameType | None) -> bool:
    """A PyMongo wait outside green code on a loop's thread; True if it opens an operation."""
    now = perf_counter()
    user, outer = call_site(frame)
    state = _open
    if state.frame is not None and state.frame is outer:
        state.last = now
        return False  # another wait of the operation already counted
    if state.frame is not None:
        _close(state, state.last)  # ended without reaching the pool (e.g. selection failed)
    state.frame = outer
    state.site = site_of(user) if recording or _watches else None
    entry = entry_point(user) if recording else None
    state.entry = site_of(entry) if entry is not None else None
    state.start = state.last = now
    return True


def operation_open() -> bool:
    """Whether a blocking operation is in progress on this thread."""
    return _open.frame is not None


def end_blocking() -> None:
    """The operation in progress on this thread (if any) has ended."""
    state = _open
    if state.frame is not None:
        _close(state, perf_counter())


def discard() -> None:
    """Forget this thread's operation in progress without recording it (it was refused)."""
    _open.frame = _open.site = None


def _close(state: _Open, end: float) -> None:
    site = state.site
    state.frame = state.site = None
    if site is not None:
        seconds = max(end - state.start, 0.0)
        if recording:
            _add("blocking", site, seconds, state.entry)
        _notify("blocking", site, seconds)


def _close_stale() -> None:
    """Close this thread's operation if it is open (a report is being written)."""
    state = _open
    if state.frame is not None and state.site is not None:
        _close(state, state.last)


# -- green stalls -------------------------------------------------------------------------


def stall(task: Any, seconds: float) -> None:
    """Green code in ``task`` (a greenlet) held the loop ``seconds`` before giving it back.

    The call site is the innermost user frame of the greenlet where it parked;
    if the call finished in this stretch (nothing of it is left suspended), it
    is the green function itself (its ``def`` line).
    """
    frame = None if task is None or task.dead else task.gr_frame
    user, _ = call_site(frame)
    if user is not None:
        site = site_of(user)
    else:
        fn = getattr(task, "motorpatch_fn", None)
        code = getattr(fn, "__code__", None)
        if code is None:
            site = ("<unknown>", 0, getattr(fn, "__qualname__", "<unknown>"))
        else:
            site = (code.co_filename, code.co_firstlineno, fn.__qualname__)  # type: ignore[union-attr]
    if recording and seconds > _audit_threshold:
        _add("stall", site, seconds)
    _notify("stall", site, seconds)


def _notify(kind: str, site: Site, seconds: float) -> None:
    """Tell this thread's watches: every blocking operation, and stalls over their threshold."""
    if not _watches:
        return
    me = threading.get_ident()
    for watch, (threshold, thread) in list(_watches.items()):
        if thread == me and (kind == "blocking" or seconds > threshold):
            watch(kind, site, seconds)


def _update_threshold() -> None:
    threshold = min([_audit_threshold, *(t for t, _ in _watches.values())])
    set_stall_hook(stall if threshold != math.inf else None, threshold)


def set_recording(on: bool, threshold: float) -> None:
    """Start (``on``) or stop recording; ``threshold`` is the stall threshold in seconds."""
    global recording, _audit_threshold
    recording = on
    _audit_threshold = threshold if on else math.inf
    _update_threshold()


def audit_threshold() -> float:
    """The audit's stall threshold in seconds (``inf`` while it is off)."""
    return _audit_threshold


def watch(fn: Watch, threshold: float) -> None:
    """Call ``fn(kind, site, seconds)`` for this thread's blocking operations and stalls.

    Every blocking operation is passed on; stalls only over ``threshold`` seconds.
    """
    _watches[fn] = (threshold, threading.get_ident())
    _update_threshold()


def unwatch(fn: Watch) -> None:
    """Stop calling ``fn``."""
    _watches.pop(fn, None)
    _update_threshold()


"""The blocking-call audit: which call sites still hold the event loop, and for how long.

Owns the audit's switch, its report and its life cycle (at exit, in forked
children). While it records, motorpatch keeps, per call site:

- ``"blocking"``: PyMongo operations run on a thread whose event loop is
  running, outside green code; the site is the first frame outside PyMongo,
  bson, gridfs, motorpatch and the standard library; the time is how long the
  operation held the loop's thread (from its first wait to the return of its
  connection to the pool).
- ``"stall"``: stretches of green code that ran longer than the threshold
  without giving the loop back (between two waits); the site is your
  innermost frame where it gave the loop back, or, when the call ended in
  that stretch (it never waited, or its last stretch ran to the end), the
  green function's ``def`` line.

Turn it on with ``MOTORPATCH_AUDIT=report.json`` (read by ``install()``),
``install(audit="report.json")`` or :func:`enable`. The report is written at
exit and by :func:`write_report`; read it with ``python -m motorpatch.audit``.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

from motorpatch import _recorder as _record

__all__ = ["DEFAULT_STALL_MS", "disable", "enable", "is_enabled", "report", "write_report"]

DEFAULT_STALL_MS = 20.0
"""Green code that holds the loop longer than this between two waits is a stall."""

_lock = threading.Lock()
_path: Path | None = None  # as given (the parent's path)
_pid = 0  # the process that enabled the audit
_started = 0.0
_hooks_registered = False


def enable(
    path: str | os.PathLike[str] | None = None, *, stall_ms: float = DEFAULT_STALL_MS
) -> None:
    """Start recording blocking operations and green stalls (again: only updates the settings).

    :param path: where the JSON report is written at exit; ``None`` writes
        none at exit (call :func:`report` or :func:`write_report` yourself).
        A forked child writes its own report, at this path with ``.<pid>``
        before the suffix (``audit.json`` -> ``audit.4242.json``), holding
        what the child did after the fork.
    :param stall_ms: the stall threshold in milliseconds (default 20).
    :raises ValueError: ``stall_ms`` is not a positive number.
    """
    global _path, _pid, _started, _hooks_registered
    check_stall_ms(stall_ms)
    with _lock:
        if not _record.recording:
            _started = time.time()
        _path = Path(path) if path is not None else None
        _pid = os.getpid()
        _record.set_recording(True, stall_ms / 1000)
        if not _hooks_registered:
            _hooks_registered = True
            atexit.register(_write_at_exit)
            os.register_at_fork(after_in_child=_after_fork_in_child)


def check_stall_ms(stall_ms: object) -> None:
    """Raise ``ValueError`` naming the fix unless ``stall_ms`` is a positive number."""
    if not isinstance(stall_ms, int | float) or isinstance(stall_ms, bool) or not stall_ms > 0:
        raise ValueError(
            f"motorpatch audit: stall_ms={stall_ms!r} is not a positive number of milliseconds; "
            f"pass for example stall_ms={DEFAULT_STALL_MS:g} (the default)."
        )


def disable() -> None:
    """Stop recording (what was recorded stays, for :func:`report`); no report at exit."""
    global _path
    with _lock:
        _record.set_recording(False, 0.0)
        _path = None


def is_enabled() -> bool:
    """Whether the audit is recording."""
    return _record.recording


def enable_from_environment() -> None:
    """Enable the audit if ``MOTORPATCH_AUDIT`` names a report path (``install()`` calls it).

    ``MOTORPATCH_AUDIT_STALL_MS`` sets the stall threshold.
    """
    path = os.environ.get("MOTORPATCH_AUDIT")
    if not path:
        return
    raw = os.environ.get("MOTORPATCH_AUDIT_STALL_MS", "")
    try:
        stall_ms = float(raw) if raw else DEFAULT_STALL_MS
    except ValueError:
        raise ValueError(
            f"MOTORPATCH_AUDIT_STALL_MS={raw!r} is not a number of milliseconds; "
            f"set it to for example {DEFAULT_STALL_MS:g}, or unset it for the default."
        ) from None
    enable(path, stall_ms=stall_ms)


def _report_path() -> Path | None:
    if _path is None or os.getpid() == _pid:
        return _path
    return _path.with_name(f"{_path.stem}.{os.getpid()}{_path.suffix}")


def report() -> dict[str, Any]:
    """The audit so far, as JSON-ready data (the report's content).

    ``call_sites`` lists every call site, largest total first, each with
    ``kind`` (``"blocking"`` or ``"stall"``), ``file``, ``line``,
    ``function``, ``count``, ``blocked_seconds_total`` and
    ``blocked_seconds_max``.
    """
    sites = _record.snapshot()
    totals = {
        kind: {
            "count": sum(s["count"] for s in sites if s["kind"] == kind),
            "blocked_seconds": round(
                sum(s["blocked_seconds_total"] for s in sites if s["kind"] == kind), 6
            ),
        }
        for kind in ("blocking", "stall")
    }
    threshold = _record.audit_threshold()
    return {
        "motorpatch_audit": 1,
        "pid": os.getpid(),
        "python": platform.python_version(),
        "recording": _record.recording,
        "started_at": _started,
        "written_at": time.time(),
        "stall_threshold_ms": threshold * 1000 if threshold != float("inf") else None,
        "totals": totals,
        "call_sites": sites,
    }


def write_report(path: str | os.PathLike[str] | None = None) -> Path:
    """Write the report now (atomically) and return its path.

    :param path: where; by default the path given to :func:`enable` (with
        the ``.<pid>`` suffix in a forked child).
    :raises ValueError: no path given here nor to :func:`enable`.
    """
    target = Path(path) if path is not None else _report_path()
    if target is None:
        raise ValueError(
            "motorpatch.audit.write_report() needs a path: pass one, or enable the audit "
            "with one (MOTORPATCH_AUDIT=report.json, install(audit='report.json'))."
        )
    data = json.dumps(report(), indent=2)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(data + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def _write_at_exit() -> None:
    if _record.recording and _path is not None:
        write_report()


def _after_fork_in_child() -> None:
    global _started
    _record.reset()
    _record.discard()
    _started = time.time()

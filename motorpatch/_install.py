"""``install()``, ``uninstall()`` and ``is_installed()``: applying the patch registry.

The control plane: the one module that imports the patches (on the first
``install()``, so ``import motorpatch`` stays light) and the one that writes
the bridge's installed flag. Thread-safe and idempotent. ``install()``
checks the shape of every PyMongo internal it patches before touching
anything, applies every patch or none, and then checks that no loaded PyMongo
module still holds an unpatched original by name. ``uninstall()`` always
finishes: it removes every patch it can and reports the rest in one
:class:`RestoreWarning`.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Literal

from motorpatch import _detector
from motorpatch import audit as _audit
from motorpatch.bridge import is_installed, set_installed, unfinished_on_open_loops
from motorpatch.errors import MotorpatchError, RestoreWarning, UnsupportedVersionError

__all__ = ["install", "is_installed", "uninstall"]

_lock = threading.Lock()


def install(
    *,
    blocking: Literal["warn", "raise", "ignore"] = "warn",
    audit: str | os.PathLike[str] | None = None,
    audit_stall_ms: float = _audit.DEFAULT_STALL_MS,
) -> None:
    """Patch PyMongo so that, in green code, every blocking wait parks the greenlet.

    Patches PyMongo's connection set-up (DNS, connect, TLS), socket I/O, pool
    and server-selection waits, and back-off sleeps; code outside green code
    keeps PyMongo's plain blocking behaviour. Call it once at start-up;
    calling it again only updates ``blocking``.

    :param blocking: what happens when a PyMongo operation starts on a
        thread whose event loop is running but outside green code (it will
        block the loop): ``"warn"`` emits :class:`BlockingCallWarning`,
        ``"raise"`` raises :class:`GreenContextError`, ``"ignore"`` does nothing.
    :param audit: a report path: record blocking operations and green stalls
        per call site and write the JSON report there at exit
        (:mod:`motorpatch.audit`, docs/audit.md). Without it, the
        ``MOTORPATCH_AUDIT`` environment variable is read instead.
    :param audit_stall_ms: the audit's stall threshold in milliseconds
        (``MOTORPATCH_AUDIT_STALL_MS`` when the variable turns the audit on).
    :raises ValueError: ``blocking`` is not one of those three strings, or
        ``audit_stall_ms`` is not a positive number.
    :raises UnsupportedVersionError: an internal of the installed PyMongo
        that motorpatch patches is missing or changed; nothing is patched.
        A PyMongo outside the tested range whose internals match is patched
        with an :class:`UntestedVersionWarning`.
    """
    if blocking not in _detector.MODES:
        raise ValueError(
            f"motorpatch.install(blocking={blocking!r}) is not a valid mode; "
            f"use one of {', '.join(repr(m) for m in _detector.MODES)}."
        )
    _audit.check_stall_ms(audit_stall_ms)
    if audit is not None:
        _audit.enable(audit, stall_ms=audit_stall_ms)
    else:
        _audit.enable_from_environment()
    # The patches import PyMongo; loaded here, not by ``import motorpatch``
    # (docs/architecture.md#import-motorpatch-stays-light).
    from motorpatch._versions import check_pymongo
    from motorpatch.patches import REGISTRY, apply_all, find_stale_references, remove_all

    with _lock:
        _detector.set_mode(blocking)
        if is_installed():
            return
        check_pymongo(REGISTRY)
        apply_all(REGISTRY)
        stale = find_stale_references(REGISTRY)
        if stale:
            remove_all()
            raise UnsupportedVersionError(
                "motorpatch found PyMongo modules that hold unpatched blocking functions: "
                + ", ".join(stale)
                + ". This PyMongo's internals differ from the versions motorpatch "
                "supports; install a supported PyMongo."
            )
        set_installed(True)


def uninstall() -> None:
    """Restore every patched PyMongo attribute to its original object. Idempotent.

    Connections already wrapped in a green socket keep working in plain code;
    new connections are plain PyMongo sockets again. Once it has run,
    :func:`is_installed` is False and motorpatch no longer changes what
    PyMongo does, even where another library's replacement of a patched
    attribute keeps one of motorpatch's wrappers reachable.

    :raises MotorpatchError: green calls are in flight (running, parked, or
        queued for their first turn) on a loop that is not closed; nothing is
        changed. Await or cancel them first.
    :warns RestoreWarning: some attribute could not be put back because
        another library replaced it after :func:`install`; the warning names
        each one, what is there now, and why it was left in place. Every
        other attribute is restored all the same.
    """
    with _lock:
        if not is_installed():
            return
        busy = len(unfinished_on_open_loops())
        if busy:
            raise MotorpatchError(
                f"motorpatch.uninstall() was called while {busy} green call(s) are in flight. "
                "Unpatched, their next pool or server-selection wait would block the event "
                "loop's thread, and could deadlock it. Await or cancel them first (for example, "
                "uninstall after the loop has finished); nothing was changed."
            )
        from motorpatch.patches import remove_all

        set_installed(False)  # first: a wrapper left reachable now runs the original
        problems = remove_all()
    if problems:
        warnings.warn(
            RestoreWarning(
                "motorpatch.uninstall() restored every patched PyMongo attribute but "
                f"{len(problems)}: " + "; ".join(problems) + ". motorpatch is uninstalled "
                "(its wrappers still reachable there pass every call to PyMongo's original). "
                "To get the attribute back exactly, undo the other library's change first, or "
                "uninstall motorpatch before installing that library."
            ),
            stacklevel=2,
        )

"""Public exception and warning classes of motorpatch.

Every message says what happened, why, and the one line to change, in the
manner of SQLAlchemy's greenlet errors.
"""

from __future__ import annotations

__all__ = [
    "BlockingCallWarning",
    "GreenContextError",
    "MotorpatchError",
    "MotorpatchWarning",
    "RestoreWarning",
    "UnsupportedVersionError",
    "UntestedVersionWarning",
]


class MotorpatchError(RuntimeError):
    """Base class of every exception motorpatch raises (``except motorpatch.MotorpatchError``)."""


class MotorpatchWarning(UserWarning):
    """Base class of every warning motorpatch emits (one filter silences them all)."""


class BlockingCallWarning(MotorpatchWarning, RuntimeWarning):
    """PyMongo was called on a thread whose event loop is running, outside green code.

    The call completes, but it blocks the event loop while it waits on the
    network. Decorate the calling function with ``@motorpatch.green`` (and
    ``await`` it), or run the call in a thread with ``loop.run_in_executor``.
    ``motorpatch.install(blocking="raise")`` turns this warning into a
    :class:`GreenContextError`; ``blocking="ignore"`` silences it.
    """


class GreenContextError(MotorpatchError):
    """An operation that needs green code was attempted outside of it.

    Raised by :func:`motorpatch.await_` outside a ``@motorpatch.green``
    function, and by PyMongo operations on an event loop's thread when
    ``motorpatch.install(blocking="raise")`` is in effect.
    """


class UnsupportedVersionError(MotorpatchError):
    """The installed PyMongo's internals differ from the ones motorpatch patches.

    ``install()`` checks every internal it patches before touching any; the
    message names each one that is missing or changed, and nothing is
    patched. Install a PyMongo release in the tested range the message names.
    """


class UntestedVersionWarning(MotorpatchWarning):
    """The installed PyMongo is outside the tested range, but its internals match.

    ``install()`` patches it anyway, since every internal it needs has the
    expected shape. Pin a tested PyMongo release, or silence the warning with
    ``warnings.filterwarnings("ignore", category=motorpatch.UntestedVersionWarning)``.
    """


class RestoreWarning(MotorpatchWarning):
    """``uninstall()`` finished, but left some PyMongo attributes as another library set them.

    Another library replaced a patched attribute after ``install()`` (a
    tracer that assigns its own function over PyMongo's, say), so the
    original cannot be put back without undoing that library's change. The
    message names each attribute, what is there now and why it stayed.
    motorpatch's wrappers still reachable through such an attribute pass
    every call to PyMongo's original once ``uninstall()`` has run, so
    PyMongo behaves as plain PyMongo; undo the other library's change first
    (or uninstall motorpatch before installing it) to get the attribute back
    exactly.
    """

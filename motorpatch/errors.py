"""Public exception and warning classes of motorpatch.

Every message says what happened, why, and the one line to change, in the
manner of SQLAlchemy's greenlet errors.
"""

from __future__ import annotations

__all__ = ["BlockingCallWarning", "GreenContextError", "UnsupportedVersionError"]


class BlockingCallWarning(RuntimeWarning):
    """PyMongo was called on a thread whose event loop is running, outside green code.

    The call completes, but it blocks the event loop while it waits on the
    network. Decorate the calling function with ``@motorpatch.green`` (and
    ``await`` it), or run the call in a thread with ``loop.run_in_executor``.
    ``motorpatch.install(blocking="raise")`` turns this warning into a
    :class:`GreenContextError`; ``blocking="ignore"`` silences it.
    """


class GreenContextError(RuntimeError):
    """An operation that needs green code was attempted outside of it.

    Raised by :func:`motorpatch.await_` outside a ``@motorpatch.green``
    function, and by PyMongo operations on an event loop's thread when
    ``motorpatch.install(blocking="raise")`` is in effect.
    """


class UnsupportedVersionError(RuntimeError):
    """The installed PyMongo is a version whose internals motorpatch has not verified.

    motorpatch patches PyMongo internals, so it refuses to guess: install a
    PyMongo version in the supported range named in the message.
    """

"""Public exception and warning classes of motorpatch.

Every message says what happened, why, and the one line to change, in the
manner of SQLAlchemy's greenlet errors.
"""

from __future__ import annotations

__all__ = [
    "BlockingCallWarning",
    "GreenContextError",
    "PlainFallbackWarning",
    "UnsupportedVersionError",
    "UntestedVersionWarning",
]


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
    """The installed PyMongo's internals differ from the ones motorpatch patches.

    ``install()`` checks every internal it patches before touching any; the
    message names each one that is missing or changed, and nothing is
    patched. Install a PyMongo release in the tested range the message names.
    """


class UntestedVersionWarning(UserWarning):
    """The installed PyMongo is outside the tested range, but its internals match.

    ``install()`` patches it anyway, since every internal it needs has the
    expected shape. Pin a tested PyMongo release, or silence the warning with
    ``warnings.filterwarnings("ignore", category=motorpatch.UntestedVersionWarning)``.
    """


class PlainFallbackWarning(RuntimeWarning):
    """A ``@green`` function ran as plain blocking code while an event loop served elsewhere.

    Called on a thread with no running event loop, a green function runs
    synchronously. That is intended in scripts and in threads you start on
    purpose, but when a framework does it (it ran the function in its thread
    pool because it did not see it as async) green code is silently lost.
    Emitted once per function; the message names the thread, the cause and
    the fix. Wrap intended plain calls in ``with motorpatch.allow_plain():``.
    """

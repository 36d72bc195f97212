"""motorpatch: ordinary synchronous PyMongo code, non-blocking on an asyncio event loop.

Call :func:`install` once at start-up and decorate handlers and service
functions with :func:`green`; their unmodified PyMongo calls then park the
current greenlet instead of blocking the event loop. Outside green code
PyMongo behaves exactly as before.

The package reads from the top down (docs/architecture.md#the-layout): this
face and the control plane (``_install``, ``_versions``, ``_stats``,
``_detector``, ``errors``); :mod:`motorpatch.patches`, what is replaced in
PyMongo; :mod:`motorpatch.socket_shim`, the green socket; and
:mod:`motorpatch.bridge`, the greenlet <-> event loop runtime beneath them all.
"""

from motorpatch._install import install, is_installed, uninstall
from motorpatch._stats import stats
from motorpatch.bridge import allow_plain, await_, green, green_iter
from motorpatch.errors import (
    BlockingCallWarning,
    GreenContextError,
    MotorpatchError,
    MotorpatchWarning,
    PlainFallbackWarning,
    RestoreWarning,
    UnsupportedVersionError,
    UntestedVersionWarning,
)

__all__ = [
    "BlockingCallWarning",
    "GreenContextError",
    "MotorpatchError",
    "MotorpatchWarning",
    "PlainFallbackWarning",
    "RestoreWarning",
    "UnsupportedVersionError",
    "UntestedVersionWarning",
    "allow_plain",
    "await_",
    "green",
    "green_iter",
    "install",
    "is_installed",
    "stats",
    "uninstall",
]

__version__ = "0.1.0"

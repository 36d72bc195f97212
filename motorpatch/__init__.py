"""motorpatch: ordinary synchronous PyMongo code, non-blocking on Tornado and asyncio.

Call :func:`install` once at start-up and decorate handlers and service
functions with :func:`green`; their unmodified PyMongo calls then park the
current greenlet instead of blocking the event loop. Outside green code
PyMongo behaves exactly as before.
"""

from motorpatch._bridge import await_
from motorpatch._fallback import allow_plain
from motorpatch._green import green
from motorpatch._green_iter import green_iter
from motorpatch._install import install, is_installed, uninstall
from motorpatch._stats import stats
from motorpatch.errors import (
    BlockingCallWarning,
    GreenContextError,
    PlainFallbackWarning,
    UnsupportedVersionError,
    UntestedVersionWarning,
)

__all__ = [
    "BlockingCallWarning",
    "GreenContextError",
    "PlainFallbackWarning",
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

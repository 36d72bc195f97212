"""motorpatch: ordinary synchronous PyMongo code, non-blocking on Tornado and asyncio.

Call :func:`install` once at start-up and decorate handlers and service
functions with :func:`green`; their unmodified PyMongo calls then park the
current greenlet instead of blocking the event loop. Outside green code
PyMongo behaves exactly as before.
"""

from motorpatch._bridge import await_, green
from motorpatch._install import install, is_installed, uninstall
from motorpatch._stats import stats
from motorpatch.errors import (
    BlockingCallWarning,
    GreenContextError,
    UnsupportedVersionError,
    UntestedVersionWarning,
)

__all__ = [
    "BlockingCallWarning",
    "GreenContextError",
    "UnsupportedVersionError",
    "UntestedVersionWarning",
    "await_",
    "green",
    "install",
    "is_installed",
    "stats",
    "uninstall",
]

__version__ = "0.1.0"

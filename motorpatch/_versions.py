"""Which PyMongo releases motorpatch knows the internals of, and the refusal of others."""

from __future__ import annotations

import pymongo

from motorpatch.errors import UnsupportedVersionError

__all__ = ["SUPPORTED", "check_pymongo_version"]

# Inclusive (major, minor) range whose internals every patch was checked on.
SUPPORTED = ((4, 12), (4, 20))


def _range() -> str:
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED
    return f"{lo_major}.{lo_minor} to {hi_major}.{hi_minor}"


def check_pymongo_version(version: str | None = None) -> None:
    """Raise :class:`UnsupportedVersionError` unless PyMongo's version is in :data:`SUPPORTED`."""
    version = version or pymongo.version
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    if not (SUPPORTED[0] <= major_minor <= SUPPORTED[1]):
        raise UnsupportedVersionError(
            f"motorpatch does not know the internals of the installed PyMongo {version}; "
            f"it supports PyMongo {_range()}. Install a supported release, for example "
            f"'pip install \"pymongo>={SUPPORTED[0][0]}.{SUPPORTED[0][1]},"
            f"<{SUPPORTED[1][0]}.{SUPPORTED[1][1] + 1}\"', or upgrade motorpatch."
        )

"""Which PyMongo releases motorpatch was tested on, and the check ``install()`` runs first.

The check looks at the internals themselves, not only the version number:
every patch target must exist with the shape motorpatch expects (see
``Patch.shape_problem``). In the tested range that always holds; outside it,
matching internals are patched with an :class:`UntestedVersionWarning`, and
internals that changed are refused with an error naming each change.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pymongo

from motorpatch.errors import UnsupportedVersionError, UntestedVersionWarning
from motorpatch.patches import Patch

__all__ = ["SUPPORTED", "check_pymongo"]

# Inclusive (major, minor) range whose internals every patch was read and tested on.
SUPPORTED = ((4, 9), (4, 20))


def _range() -> str:
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED
    return f"{lo_major}.{lo_minor} to {hi_major}.{hi_minor}"


def _pin() -> str:
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED
    return f'pip install "pymongo>={lo_major}.{lo_minor},<{hi_major}.{hi_minor + 1}"'


def in_tested_range(version: str) -> bool:
    """Whether ``version`` (a PyMongo version string) is in :data:`SUPPORTED`."""
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return SUPPORTED[0] <= major_minor <= SUPPORTED[1]


def check_pymongo(patches: Iterable[Patch], version: str | None = None) -> None:
    """Refuse PyMongo internals that differ from what ``patches`` expect; warn if untested.

    :raises UnsupportedVersionError: a patch target is missing or has another shape.
    """
    version = version or pymongo.version
    problems = [problem for p in patches if p.applies() and (problem := p.shape_problem())]
    if problems:
        raise UnsupportedVersionError(
            f"motorpatch cannot patch PyMongo {version}: its internals differ from the ones "
            f"motorpatch knows (PyMongo {_range()}): " + "; ".join(problems) + ". Nothing was "
            f"patched. Install a tested release, for example '{_pin()}', or upgrade motorpatch."
        )
    if not in_tested_range(version):
        warnings.warn(
            UntestedVersionWarning(
                f"motorpatch was tested on PyMongo {_range()}, not on the installed {version}. "
                "Every internal it patches has the expected shape, so it is installed, but "
                f"behaviour is unproven: pin a tested release ('{_pin()}') or upgrade "
                "motorpatch. To accept the risk, silence it with warnings.filterwarnings("
                "'ignore', category=motorpatch.UntestedVersionWarning)."
            ),
            stacklevel=3,  # the caller of install()
        )

"""Obtain PyMongo's ``test/`` directory for the installed PyMongo from its source distribution.

``pip download --no-deps --no-binary :all: pymongo==X.Y.Z`` into ``compat/.cache/sdist``
(once), then only the ``test/`` member of the archive is extracted to
``compat/.cache/pymongo-X.Y.Z/test``. The sdist's own ``pymongo``/``bson``/``gridfs``
packages are deliberately not extracted, so the suite always imports the *installed*
PyMongo (the one motorpatch patches), never the source tree next to the tests.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def installed_version() -> str:
    return version("pymongo")


def suite_dir(ver: str) -> Path:
    """The directory that holds ``test/`` for PyMongo ``ver`` (pytest's rootdir)."""
    return CACHE / f"pymongo-{ver}"


def fetch(ver: str | None = None) -> Path:
    """Download (if needed) and extract PyMongo ``ver``'s test suite; return its rootdir."""
    ver = ver or installed_version()
    root = suite_dir(ver)
    if (root / "test" / "__init__.py").exists():
        return root
    sdist_dir = CACHE / "sdist"
    archive = sdist_dir / f"pymongo-{ver}.tar.gz"
    if not archive.exists():
        sdist_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
             "--no-binary", ":all:", f"pymongo=={ver}", "-d", str(sdist_dir)],
            check=True,
        )
    prefix = f"pymongo-{ver}/test/"
    tmp = root.with_name(root.name + ".partial")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for m in members:
            m.name = m.name[len(f"pymongo-{ver}/"):]
        tar.extractall(tmp, members=members, filter="data")
    tmp.rename(root)
    return root


if __name__ == "__main__":
    print(fetch(sys.argv[1] if len(sys.argv) > 1 else None))

"""How PyMongo's test suite is invoked: its pytest configuration, the default file subset.

The pytest options are taken from the sdist's own ``pyproject.toml``
(``[tool.pytest.ini_options]``: ``filterwarnings = error`` and its
exceptions, the markers, ``-m "default or default_async"``, ``xfail_strict``)
and written to ``compat-pytest.ini`` beside ``test/``, minus what needs
plugins PyMongo's CI has and this run does not (pytest-asyncio's options, the
junit XML file, live INFO logging).
"""

from __future__ import annotations

import shlex
import tarfile
import tomllib
from pathlib import Path
from typing import Any

from compat.fetch import CACHE

__all__ = ["MOCKUPDB", "QUICK_FILES", "sync_files", "write_ini"]

# PyMongo's tests against MockupDB (wire-level fakes of replica sets, mongoses, network
# errors): PyMongo's CI runs them as a separate task with ``-m mockupdb``; here the
# marker expression includes them, which selects nothing else (no other sync test
# carries that marker).
MOCKUPDB = "mockupdb"

# ``--quick``: the files that exercise most of what motorpatch patches (pool,
# sockets, server selection, sessions, cursors, bulk, GridFS, monitoring,
# retries, threads, fork); about 2.5 minutes per mode against nx-27017 (add
# ``mockupdb`` for PyMongo's wire-fault tests, about 4 more). The default (and CI)
# run is every synchronous module and mockupdb/ (compat/README.md "Timing and CI").
QUICK_FILES = [
    "test_bulk.py",
    "test_client.py",
    "test_collection.py",
    "test_cursor.py",
    "test_database.py",
    "test_gridfs.py",
    "test_gridfs_bucket.py",
    "test_grid_file.py",
    "test_monitoring.py",
    "test_pooling.py",
    "test_session.py",
    "test_retryable_reads.py",
    "test_retryable_writes.py",
    "test_connection_monitoring.py",
    "test_change_stream.py",
    "test_transactions.py",
    "test_threads.py",
    "test_fork.py",
]

_DROP_KEYS = {"asyncio_default_fixture_loop_scope", "asyncio_mode", "log_cli_level", "testpaths"}


def sync_files(root: Path) -> list[str]:
    """Every synchronous test module (``test/test_*.py``, not ``asynchronous/``), and mockupdb/."""
    files = sorted(p.name for p in (root / "test").glob("test_*.py"))
    return [*files, MOCKUPDB] if (root / "test" / MOCKUPDB).is_dir() else files





def _pyproject(version: str) -> dict[str, Any]:
    archive = CACHE / "sdist" / f"pymongo-{version}.tar.gz"
    with tarfile.open(archive) as tar:
        member = tar.extractfile(f"pymongo-{version}/pyproject.toml")
        assert member is not None
        return tomllib.loads(member.read().decode())


def write_ini(root: Path, version: str) -> Path:
    """Write the suite's pytest options as an ini file beside ``test/``; return its path."""
    options = dict(_pyproject(version)["tool"]["pytest"]["ini_options"])
    lines = ["[pytest]"]
    addopts = [
        a for a in options.pop("addopts", []) if not a.startswith(("--junitxml", "--strict-config"))
    ]
    # PyMongo's suite does not use hypothesis; its pytest plugin (installed for our own
    # tests) hit "SystemError: AST constructor recursion depth mismatch" in its report hook
    # after a green test body on CPython 3.11 and aborted the run, so it is not loaded.
    addopts = [*addopts, "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    addopts = [f"{a} or mockupdb" if a.startswith("-m ") else a for a in addopts]
    lines.append("addopts = " + " ".join(_ini_quote(a) for a in addopts))
    for key, value in options.items():
        if key in _DROP_KEYS:
            continue
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines.extend(f"    {v}" for v in value)
        else:
            lines.append(f"{key} = {str(value).lower() if isinstance(value, bool) else value}")
    path = root / "compat-pytest.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def _ini_quote(arg: str) -> str:
    # "-m default or default_async" is one argument in PyMongo's list
    if arg.startswith("-m "):
        return "-m " + shlex.quote(arg[3:])
    return shlex.quote(arg)

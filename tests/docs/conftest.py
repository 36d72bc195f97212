"""Fixtures for the documentation tests: the repository root and a scratch database URI.

The docs' code blocks and the browser test talk to the session's real server
(``server_uri``: nx-27017, or MONGODB_URI). Each gets a database of its own,
named in the URI so that ``client.get_default_database(...)`` and
``mongoengine.connect(host=...)`` pick it, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymongo
import pytest

ROOT = Path(__file__).resolve().parents[2]


def with_database(uri: str, name: str) -> str:
    """``uri`` with its default database set to ``name`` (other options kept).

    If the URI has credentials but no ``authSource``, the database it named
    before (else ``admin``) stays the authentication database.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"not a MongoDB URI: {uri!r}")
    hosts, _, tail = rest.partition("/")
    old_db, question, options = tail.partition("?")
    if "@" in hosts and "authsource=" not in options.lower():
        auth = f"authSource={old_db or 'admin'}"
        options = f"{options}&{auth}" if options else auth
        question = "?"
    return f"{scheme}://{hosts}/{name}{question}{options}"


@pytest.fixture
def scratch_uri(server_uri: str) -> Iterator[Callable[[str], str]]:
    """``scratch_uri(prefix)``: the test server's URI with a fresh database; all dropped after."""
    names: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        names.append(name)
        return with_database(server_uri, name)

    yield make
    if names:
        with pymongo.MongoClient(server_uri, serverSelectionTimeoutMS=10000) as client:
            for name in names:
                client.drop_database(name)

"""Shared fixtures: a real server (nx-27017, or MONGODB_URI), install/uninstall, the fault proxy."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pymongo
import pytest

import motorpatch
from tests.support.loops import LOOP_KINDS
from tests.support.proxy import FaultProxy
from tests.support.servers import NxServer


@pytest.fixture(scope="session")
def server_uri() -> Iterator[str]:
    """A MongoDB URI: MONGODB_URI when set, else a fresh nx-27017 for the session."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    server = NxServer().start()
    try:
        yield server.uri
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def server_address(server_uri: str) -> tuple[str, int]:
    """(host, port) of the first host in ``server_uri``, for the fault proxy."""
    node = pymongo.uri_parser.parse_uri(server_uri)["nodelist"][0]
    return node[0], node[1]


@pytest.fixture
def installed() -> Iterator[None]:
    """motorpatch installed for one test, always uninstalled after."""
    motorpatch.install()
    try:
        yield
    finally:
        motorpatch.uninstall()


@pytest.fixture(autouse=True)
def _always_uninstalled() -> Iterator[None]:
    yield
    motorpatch.uninstall()
    assert not motorpatch.is_installed()


@pytest.fixture
def make_client(server_uri: str) -> Iterator[object]:
    """Factory of MongoClients on the test server (or another URI); all closed after."""
    clients: list[pymongo.MongoClient[dict[str, object]]] = []

    def make(uri: str | None = None, **kwargs: object) -> pymongo.MongoClient[dict[str, object]]:
        kwargs.setdefault("serverSelectionTimeoutMS", 10000)
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            uri or server_uri, **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def coll(make_client: object) -> Iterator[object]:
    """A fresh collection on the test server, dropped after."""
    client = make_client()  # type: ignore[operator]
    name = f"t_{uuid.uuid4().hex[:12]}"
    collection = client["motorpatch_test"][name]
    yield collection
    collection.drop()


@pytest.fixture
def proxy(server_address: tuple[str, int]) -> Iterator[FaultProxy]:
    """A fault proxy in front of the test server (delay, hang/resume, request counter)."""
    p = FaultProxy(server_address[1], server_address[0]).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Each supported event loop: plain asyncio, Tornado's IOLoop, uvloop."""
    return str(request.param)

"""Credentials in the URI never leak into logs, warnings or exception text, plain or green.

Each scenario runs with ``user:password`` in the URI, once in plain PyMongo and
once in green code, capturing every log record (all loggers at DEBUG,
PyMongo's structured command/connection/server-selection logs included),
every warning, and each exception's text (message, ``repr`` and the whole
formatted chain). Scenarios: authentication refused (a mockupdb server
answering ``saslStart`` with code 18), a refused port (server selection
fails), a handshake that times out behind the hung fault proxy, and a
``BlockingCallWarning`` from PyMongo called on the loop's thread outside green
code. The password must appear nowhere; the username must appear no more
often in green code than in plain PyMongo (motorpatch adds no leak).
"""

from __future__ import annotations

import logging
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mockupdb import MockupDB

import motorpatch
from tests.support.loops import run_on
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("installed")

USER = f"user{uuid.uuid4().hex[:6]}"
PASSWORD = f"pw-{uuid.uuid4().hex}"


@pytest.fixture
def auth_refusing_server() -> Iterator[int]:
    """A mockupdb standalone that refuses every SASL conversation (code 18)."""
    server = MockupDB()

    def respond(request: Any) -> bool:
        name = next(iter(request.doc))
        if name.lower() in ("hello", "ismaster"):
            return bool(request.ok(isWritablePrimary=True, ismaster=True, helloOk=True,
                                   minWireVersion=0, maxWireVersion=21,
                                   logicalSessionTimeoutMinutes=30))
        if name in ("saslStart", "saslContinue", "authenticate"):
            return bool(request.replies(ok=0, code=18, codeName="AuthenticationFailed",
                                        errmsg="Authentication failed."))
        return bool(request.ok())

    server.autoresponds(respond)
    server.run()
    try:
        yield server.port
    finally:
        server.stop()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage() + " " + repr(record.__dict__))


def _texts_of(run: Callable[[], Any]) -> list[str]:
    """Everything ``run()`` logged, warned or raised, as text."""
    handler, root = _Capture(), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                run()
            except Exception as exc:
                texts += [str(exc), repr(exc), *traceback.format_exception(exc)]
                details = getattr(exc, "details", None)
                texts.append(repr(details))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    texts += [f"{w.category.__name__}: {w.message}" for w in caught]
    assert texts or handler.texts, "the scenario produced nothing to inspect"
    return texts + handler.texts


def _uri(port: int) -> str:
    return f"mongodb://{USER}:{PASSWORD}@127.0.0.1:{port}/?authSource=admin"


def _plain_and_green(uri: str, make_client: Any, **options: Any) -> tuple[list[str], list[str]]:
    plain_client, green_client = make_client(uri, **options), make_client(uri, **options)
    plain = _texts_of(lambda: plain_client.db.coll.find_one({}))
    green = _texts_of(
        lambda: run_on("asyncio", motorpatch.green(lambda: green_client.db.coll.find_one({})))
    )
    return plain, green


def _assert_no_leak(plain: list[str], green: list[str]) -> None:
    assert not [t for t in plain if PASSWORD in t], "plain PyMongo leaked the password"
    assert not [t for t in green if PASSWORD in t], "green code leaked the password"
    assert sum(t.count(USER) for t in green) <= sum(t.count(USER) for t in plain)


def test_authentication_failure_leaks_nothing(auth_refusing_server, make_client):
    plain, green = _plain_and_green(_uri(auth_refusing_server), make_client)
    assert any("Authentication failed" in t for t in plain)
    assert any("Authentication failed" in t for t in green)
    _assert_no_leak(plain, green)


def test_connection_refused_leaks_nothing(make_client):
    plain, green = _plain_and_green(_uri(free_port()), make_client, serverSelectionTimeoutMS=300)
    assert any("refused" in t for t in plain) and any("refused" in t for t in green)
    _assert_no_leak(plain, green)


def test_handshake_timeout_leaks_nothing(proxy, make_client):
    proxy.hang()
    plain, green = _plain_and_green(
        _uri(proxy.port), make_client, connectTimeoutMS=300, serverSelectionTimeoutMS=600
    )
    assert any("timed out" in t for t in plain) and any("timed out" in t for t in green)
    _assert_no_leak(plain, green)


def test_blocking_call_warning_leaks_nothing(auth_refusing_server, make_client):
    client = make_client(_uri(auth_refusing_server), serverSelectionTimeoutMS=2000)

    async def blocking_call() -> None:  # PyMongo on the loop's thread, outside green code
        client.db.coll.find_one({})

    texts = _texts_of(lambda: run_on("asyncio", blocking_call))
    blocking = [t for t in texts if t.startswith(f"{motorpatch.BlockingCallWarning.__name__}:")]
    assert blocking, "no BlockingCallWarning: the scenario is wrong"
    assert any("Authentication failed" in t for t in texts)
    assert not [t for t in texts + blocking if PASSWORD in t]
    assert not [t for t in blocking if USER in t]

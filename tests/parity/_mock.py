"""mockupdb-backed parity environments: a scripted server per run, for wire faults and features.

``Scripted(respond)`` is a mockupdb server on 127.0.0.1 that answers the handshake
itself (a standalone, or a replica-set primary so retryable writes apply) and hands
every other request to ``respond(request) -> bool``; unanswered requests get
``{"ok": 1}``. It logs ``(monotonic time, command name, document)`` of each request.

``mock_env(parity, make_client, script, **client_options)`` is a parity ``env`` whose
argument is a ``MockRun(client, server)``: each run
(plain, then green) gets a *fresh* server built by ``script()`` and a client on it,
so per-run state (counters, "fail the first attempt") starts over. The server's
address is one of the env's tokens, so error messages naming it compare equal.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mockupdb import MockupDB

HELLO = {"hello", "ismaster", "isMaster"}


def name_of(request: Any) -> str:
    """The command name of a mockupdb request (OP_MSG or legacy)."""
    return str(next(iter(request.doc)))


class Scripted:
    """A mockupdb server: handshake answered here, everything else by ``respond``."""

    def __init__(
        self,
        respond: Callable[[Any], bool] | None = None,
        *,
        primary: bool = True,
        max_wire_version: int = 21,
        hello_extra: dict[str, Any] | None = None,
    ) -> None:
        self.respond = respond or (lambda request: False)
        self.log: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._hello: dict[str, Any] = {
            "isWritablePrimary": True,
            "ismaster": True,
            "helloOk": True,
            "minWireVersion": 0,
            "maxWireVersion": max_wire_version,
            "logicalSessionTimeoutMinutes": 30,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
        }
        self.server = MockupDB()  # binds 127.0.0.1 (AF_INET only)
        self.server.autoresponds(self._handle)
        self.server.run()
        if primary:  # a one-member replica set: retryable writes and transactions apply
            self._hello.update(setName="rs0", hosts=[self.address], secondary=False)
        self._hello.update(hello_extra or {})

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.address}/?directConnection=true"

    def names(self, *, since: int = 0) -> list[str]:
        """Command names received (handshakes, heartbeats and endSessions left out)."""
        with self._lock:
            return [n for _, n, _ in self.log[since:] if n not in HELLO | {"endSessions"}]

    def commands(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [doc for _, n, doc in self.log if n == name]

    def _handle(self, request: Any) -> bool:
        name = name_of(request)
        with self._lock:
            self.log.append((time.monotonic(), name, dict(request.doc)))
        if name in HELLO:
            return bool(request.ok(self._hello))
        return bool(self.respond(request) or request.ok())

    def stop(self) -> None:
        # mockupdb's accept loop re-checks its stop flag only after each 1 s select: set
        # the flag, then wake the select with one connection so stop() returns at once.
        self.server._stopped = True
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.server.port), timeout=1).close()
        self.server.stop()


@dataclass
class MockRun:
    """What a scenario on a scripted server gets: the client and the server (to read its log)."""

    client: Any
    server: Scripted

    @property
    def coll(self) -> Any:
        return self.client.motorpatch_parity.things


def mock_env(
    parity: Any,
    make_client: Any,
    script: Callable[[], Scripted],
    servers: list[Scripted] | None = None,
    **client_options: Any,
) -> Callable[[str], contextlib.AbstractContextManager[Any]]:
    """A parity env: a fresh scripted server and client per run; the argument is a MockRun.

    ``servers``, if given, collects each run's server (plain first) for later checks.
    """

    @contextlib.contextmanager
    def env(mode: str) -> Iterator[Any]:
        server = script()
        if servers is not None:
            servers.append(server)
        client = make_client(server.uri, **client_options)
        try:
            yield parity.Env(MockRun(client, server), client, [server.address])
        finally:
            client.close()
            server.stop()

    return env


Step = Callable[[Any], bool] | dict[str, Any]


def hangup(request: Any) -> bool:
    """Close the connection instead of replying (a network error for the driver)."""
    return bool(request.hangup())


def steps(**per_command: list[Step]) -> Callable[[Any], bool]:
    """A ``respond``: the n-th request of a command gets its n-th step (the last repeats).

    A step is a handler ``(request) -> bool`` or a reply document.
    """
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def respond(request: Any) -> bool:
        name = name_of(request)
        if name not in per_command:
            return False
        with lock:
            n = seen.get(name, 0)
            seen[name] = n + 1
        plan = per_command[name]
        step = plan[min(n, len(plan) - 1)]
        if callable(step):
            return bool(step(request))
        return bool(request.replies(step))

    return respond


def cursor(ns: str, docs: list[dict[str, Any]], cursor_id: int = 0, first: bool = True) -> Step:
    """A find/aggregate (``first``) or getMore reply."""
    batch = "firstBatch" if first else "nextBatch"
    return {"ok": 1, "cursor": {"id": cursor_id, "ns": ns, batch: docs}}

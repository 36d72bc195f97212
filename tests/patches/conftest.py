"""Fixtures for the patch tests: a seeded collection via the fault proxy, listeners, one slot.

Everything talks to real servers on 127.0.0.1 (the session's nx-27017, through
the loopback fault proxy where replies must be slow); event listeners are
PyMongo's public monitoring API, used to synchronise without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.read_preferences import ReadPreference

import motorpatch


class _Recorder:
    """Records every event it receives as (monotonic time, event); runs per-class hooks."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Any]] = []
        self._hooks: dict[type, list[Callable[[Any], None]]] = {}

    def on(self, event_type: type, hook: Callable[[Any], None]) -> None:
        """Call ``hook(event)`` (in the publishing thread or greenlet) for each such event."""
        self._hooks.setdefault(event_type, []).append(hook)

    def of(self, event_type: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, event_type)]

    def times(self, event_type: type) -> list[float]:
        return [t for t, e in self.events if isinstance(e, event_type)]

    def _record(self, event: Any) -> None:
        self.events.append((time.monotonic(), event))
        for hook in self._hooks.get(type(event), ()):
            hook(event)


class PoolRecorder(_Recorder, monitoring.ConnectionPoolListener):
    pool_created = pool_ready = pool_cleared = pool_closed = _Recorder._record
    connection_created = connection_ready = connection_closed = _Recorder._record
    connection_check_out_started = connection_check_out_failed = _Recorder._record
    connection_checked_out = connection_checked_in = _Recorder._record


class CommandRecorder(_Recorder, monitoring.CommandListener):
    started = succeeded = failed = _Recorder._record


class HeartbeatRecorder(_Recorder, monitoring.ServerHeartbeatListener):
    started = succeeded = failed = _Recorder._record


_KINDS = {"pool": PoolRecorder, "command": CommandRecorder, "heartbeat": HeartbeatRecorder}


@pytest.fixture
def recorder() -> Callable[[str], _Recorder]:
    """Factory: ``recorder("pool" | "command" | "heartbeat")``, pass it in ``event_listeners``."""
    return lambda kind: _KINDS[kind]()


def _fail_fast(fn: Callable[..., Any]) -> Callable[..., Any]:
    failed: list[BaseException] = []

    def wrapper(*args: Any) -> Any:
        if failed:
            raise RuntimeError("an earlier call failed") from failed[0]
        try:
            return fn(*args)
        except Exception as exc:
            failed.append(exc)
            raise

    return wrapper


@pytest.fixture
def fail_fast() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``fail_fast(fn)``: ``fn``, but once one call has raised, every later call raises at once.

    Keeps a regression from becoming a near-hang: unpatched, each green call queued
    behind a blocking wait would in turn block the loop's thread for that wait's whole
    timeout (``run_on``'s own timeout cannot fire while the loop's thread is blocked).
    """
    return _fail_fast


@pytest.fixture
def seeded(coll: Any) -> Any:
    """The test collection holding ``{"i": i, "tag": "doc-<i>"}`` for i in 0..9."""
    coll.insert_many([{"i": i, "tag": f"doc-{i}"} for i in range(10)])
    return coll


@pytest.fixture
def proxied(make_client: Any, proxy: Any, seeded: Any) -> Callable[..., Any]:
    """Factory: ``proxied(**client_options)`` -> the seeded collection via a client on the proxy."""

    def make(**kwargs: Any) -> Any:
        client = make_client(proxy.uri, **kwargs)
        return client[seeded.database.name][seeded.name]

    return make


@pytest.fixture
def getter(fail_fast: Any) -> Callable[[Any], Any]:
    """``getter(coll)``: a green ``get(i)`` -> the tag of doc ``i % 10`` (fail-fast)."""
    return lambda pc: motorpatch.green(fail_fast(lambda i: pc.find_one({"i": i % 10})["tag"]))


@pytest.fixture
def one_slot(proxy: Any, proxied: Any, recorder: Any, getter: Any) -> SimpleNamespace:
    """maxPoolSize=1 through the proxy, its one connection made; CMAP and command recorders.

    Gives ``pc`` (the collection), ``pool``, ``get`` (green), ``cmap``, ``commands`` and
    ``proxy``. ``waitQueueTimeoutMS`` (10 s) only bounds a regression; no legitimate wait
    comes near it.
    """
    cmap, commands = recorder("pool"), recorder("command")
    pc = proxied(maxPoolSize=1, waitQueueTimeoutMS=10000, event_listeners=[cmap, commands])
    server = pc.database.client._get_topology().select_server(ReadPreference.PRIMARY, "test")
    assert pc.find_one({"i": 0})["tag"] == "doc-0"
    cmap.events.clear()
    return SimpleNamespace(
        pc=pc, pool=server.pool, get=getter(pc), cmap=cmap, commands=commands, proxy=proxy
    )

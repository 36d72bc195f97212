"""Co-existence with other instrumentation, and PyMongo's monitoring in green code.

- A third-party wrapt wrapper on an attribute motorpatch also patches
  (``Pool._get_conn``), put on before or after ``install()``: both run in
  green code; ``uninstall()`` takes off only motorpatch's; the other library
  unwrapping first leaves motorpatch's working.
- A tracer written the way ddtrace's PyMongo integration is (wrappers on
  ``Connection.command`` and the pool checkout, the active span in a
  ContextVar): its spans nest under the caller's span in green code.
- Command, CMAP and SDAM listeners see the same events in the same order
  per operation, plain and green; they run in the greenlet's context, so
  they read the caller's context variables. PyMongo's ``pymongo.command``
  DEBUG log is the same plain and green, once ids and durations are removed.

Against the session's real server (nx-27017 or MONGODB_URI).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from typing import Any

import pymongo.synchronous.pool as pool_module
import pytest
import wrapt
from pymongo import monitoring

import motorpatch
from tests.support.loops import run_on

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


# -- a third-party wrapper on an attribute motorpatch patches -----------------------------


class Tracer:
    """Counts the checkouts it saw, with the request id in force at each."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        self.seen.append(REQUEST_ID.get())
        return wrapped(*args, **kwargs)


def _ours_in_chain() -> bool:
    chain = wrapt.wrapper_chain(vars(pool_module.Pool)["_get_conn"])
    return any(getattr(link, "_self_wrapper", None) is not None and
               getattr(link._self_wrapper, "__module__", "").startswith("motorpatch")
               for link in chain)  # fmt: skip


def _green_finds(coll: Any, n: int = 5) -> list[Any]:
    async def main() -> list[Any]:
        async def one(i: int) -> Any:
            REQUEST_ID.set(f"req-{i}")
            return await motorpatch.green(coll.find_one)({"i": i})

        return list(await asyncio.gather(*[one(i) for i in range(n)]))

    return run_on("asyncio", main)


@pytest.mark.parametrize(
    "order",
    [
        "theirs first",
        "ours first",
    ],
)
def test_both_wrappers_run_and_uninstall_removes_only_ours(order, coll):
    original = vars(pool_module.Pool)["_get_conn"]
    tracer = Tracer()
    if order == "ours first":
        motorpatch.install()
    theirs = wrapt.wrap_function_wrapper(pool_module, "Pool._get_conn", tracer)
    try:
        motorpatch.install()
        assert _ours_in_chain()
        coll.insert_many([{"i": i} for i in range(5)])  # plain, before the loop: traced too
        tracer.seen.clear()
        docs = _green_finds(coll)
        assert [d["i"] for d in docs] == list(range(5))
        # Their wrapper ran for each green checkout, in the caller's context.
        assert sorted(tracer.seen) == [f"req-{i}" for i in range(5)]

        motorpatch.uninstall()
        assert vars(pool_module.Pool)["_get_conn"] is theirs  # theirs stays...
        assert not _ours_in_chain()  # ...ours is gone from beneath it
        assert theirs.__wrapped__ is original
        tracer.seen.clear()
        assert coll.find_one({"i": 1})["i"] == 1
        assert tracer.seen == ["-"]
    finally:
        wrapt.unwrap_object(pool_module, "Pool._get_conn", theirs)
    assert vars(pool_module.Pool)["_get_conn"] is original


def test_the_other_library_unwrapping_first_leaves_ours(coll):
    original = vars(pool_module.Pool)["_get_conn"]
    tracer = Tracer()
    motorpatch.install()
    theirs = wrapt.wrap_function_wrapper(pool_module, "Pool._get_conn", tracer)
    coll.insert_many([{"i": i} for i in range(5)])
    wrapt.unwrap_object(pool_module, "Pool._get_conn", theirs)
    assert _ours_in_chain()
    tracer.seen.clear()
    assert [d["i"] for d in _green_finds(coll)] == list(range(5))
    assert tracer.seen == []  # theirs is gone; ours still parks (the finds overlapped fine)
    motorpatch.uninstall()
    assert vars(pool_module.Pool)["_get_conn"] is original


# -- a tracer shaped like ddtrace's PyMongo integration ------------------------------------

ACTIVE_SPAN: contextvars.ContextVar[Span | None] = contextvars.ContextVar("span", default=None)


class Span:
    def __init__(self, name: str, parent: Span | None) -> None:
        self.name, self.parent, self.children = name, parent, []
        if parent is not None:
            parent.children.append(self)


@contextlib.contextmanager
def _span(name: str) -> Iterator[Span]:
    span = Span(name, ACTIVE_SPAN.get())
    token = ACTIVE_SPAN.set(span)
    try:
        yield span
    finally:
        ACTIVE_SPAN.reset(token)


def _traced_command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    dbname, spec = args[0], args[1]
    with _span(f"pymongo.cmd {next(iter(spec))} {dbname}"):
        return wrapped(*args, **kwargs)


@contextlib.contextmanager
def _traced_checkout_cm(wrapped: Any, args: Any, kwargs: Any) -> Iterator[Any]:
    with _span("pymongo.checkout"), wrapped(*args, **kwargs) as conn:
        yield conn


def _traced_checkout(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return _traced_checkout_cm(wrapped, args, kwargs)


@pytest.fixture
def ddtrace_style() -> Iterator[None]:
    """wrapt wrappers on ``Connection.command`` and ``Pool.checkout``, as ddtrace's were."""
    handles = [
        ("Connection.command", wrapt.wrap_function_wrapper(
            pool_module, "Connection.command", _traced_command)),
        ("Pool.checkout", wrapt.wrap_function_wrapper(
            pool_module, "Pool.checkout", _traced_checkout)),
    ]  # fmt: skip
    try:
        yield
    finally:
        for name, handle in reversed(handles):
            wrapt.unwrap_object(pool_module, name, handle)


@pytest.mark.usefixtures("installed", "ddtrace_style")
def test_ddtrace_style_spans_nest_under_the_callers_span(coll):
    coll.insert_many([{"i": i} for i in range(3)])

    @motorpatch.green
    def handler(i: int) -> Any:
        return coll.count_documents({"i": i})  # an aggregate: through Connection.command

    async def main() -> list[Span]:
        async def request(i: int) -> Span:
            with _span(f"request {i}") as root:
                await handler(i)
            return root

        return list(await asyncio.gather(*[request(i) for i in range(3)]))

    roots = run_on("asyncio", main)
    for root in roots:
        # The checkout span (around the command) is the request's child: never another
        # request's, never detached, though the three requests interleaved on the loop.
        assert [c.name for c in root.children] == ["pymongo.checkout"]
        names = [c.name for c in root.children[0].children]  # a new connection: + handshake
        assert names[-1] == "pymongo.cmd aggregate motorpatch_test", names
        assert set(names[:-1]) <= {"pymongo.cmd ismaster admin", "pymongo.cmd hello admin"}


# -- listeners and logging, plain and green -------------------------------------------------


class Events(monitoring.CommandListener, monitoring.ConnectionPoolListener,
             monitoring.ServerListener, monitoring.TopologyListener):  # fmt: skip
    """Every command, CMAP and SDAM event, as (kind, command name, request id in context)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def _record(self, event: Any) -> None:
        self.seen.append(
            (type(event).__name__, getattr(event, "command_name", ""), REQUEST_ID.get())
        )

    started = succeeded = failed = _record
    pool_created = pool_ready = pool_cleared = pool_closed = _record
    connection_created = connection_ready = connection_closed = _record
    connection_check_out_started = connection_check_out_failed = _record
    connection_checked_out = connection_checked_in = _record
    opened = closed = description_changed = _record


SDAM = (
    "ServerOpeningEvent",
    "ServerClosedEvent",
    "ServerDescriptionChangedEvent",
    "TopologyOpenedEvent",
    "TopologyClosedEvent",
    "TopologyDescriptionChangedEvent",
)


def _workload(coll: Any) -> None:
    coll.insert_many([{"i": 1}, {"i": 2}, {"i": 3}])
    coll.find_one({"i": 1})
    coll.update_one({"i": 1}, {"$set": {"j": 2}})
    list(coll.find({}).batch_size(1))
    coll.delete_many({})


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(json.loads(record.getMessage()))


VOLATILE = {"durationMS", "requestId", "operationId", "driverConnectionId", "serverConnectionId",
            "serverPort", "serverHost", "reply", "command", "clientId"}  # fmt: skip


@pytest.mark.usefixtures("installed")
def test_listeners_and_logs_are_the_same_plain_and_green(make_client, coll):
    name = coll.name
    logger = logging.getLogger("pymongo.command")
    runs: dict[str, tuple[Events, list[dict[str, Any]]]] = {}
    for mode in ("plain", "green"):
        events, capture = Events(), _Capture()
        client = make_client(event_listeners=[events])
        target = client[coll.database.name][name]
        client.admin.command("ping")  # discovery and the first connection: not compared
        events.seen.clear()
        old_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(capture)
        try:
            token = REQUEST_ID.set(f"{mode}-request")
            try:
                if mode == "plain":
                    _workload(target)
                else:
                    run_on("asyncio", lambda t=target: motorpatch.green(_workload)(t))
            finally:
                REQUEST_ID.reset(token)
        finally:
            logger.removeHandler(capture)
            logger.setLevel(old_level)
        runs[mode] = (events, capture.records)

    def per_operation(events: Events) -> list[tuple[str, str]]:
        return [(kind, cmd) for kind, cmd, _ in events.seen if kind not in SDAM]

    plain_events, plain_logs = runs["plain"]
    green_events, green_logs = runs["green"]
    assert per_operation(green_events) == per_operation(plain_events)
    assert ("CommandStartedEvent", "getMore") in per_operation(green_events)
    # Command and CMAP listeners ran in the caller's context (its context variable).
    assert {rid for kind, _, rid in green_events.seen if kind not in SDAM} == {"green-request"}
    assert {rid for kind, _, rid in plain_events.seen if kind not in SDAM} == {"plain-request"}

    def normalized(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]

    assert plain_logs and normalized(green_logs) == normalized(plain_logs)

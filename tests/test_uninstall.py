"""uninstall() always finishes, even after another library changed a patched attribute.

Three ways a tracer or APM agent changes ``Pool._get_conn`` after ``install()``:
a plain assignment of its own function (with or without ``functools.wraps``),
a wrapt wrapper on top, and a replacement that raises when wrapt follows its
chain. In each, ``uninstall()`` restores every other attribute, leaves
``is_installed()`` False, and reports what it could not restore in one
``RestoreWarning`` naming the attribute and what replaced it
(docs/architecture.md#uninstall-always-finishes).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pymongo.synchronous.pool
import pytest
import wrapt
from pymongo.synchronous.pool import Pool

import motorpatch
from motorpatch.patches import REGISTRY

TARGET = "pymongo.synchronous.pool.Pool._get_conn"


def _now() -> dict[str, Any]:
    """Every patched attribute of this PyMongo as it is now, by target."""
    return {p.target: vars(_owner(p))[p.attr.rpartition(".")[2]] for p in REGISTRY if p.applies()}


def _owner(p: Any) -> Any:
    obj = __import__(p.module, fromlist=["_"])
    for part in p.attr.split(".")[:-1]:
        obj = getattr(obj, part)
    return obj


@pytest.fixture
def originals() -> Iterator[dict[str, Any]]:
    """The attributes before install(); Pool._get_conn is put back by hand afterwards."""
    before = _now()
    yield before
    Pool._get_conn = before[TARGET]


def _uninstall_recording() -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        motorpatch.uninstall()
    return [w for w in caught if issubclass(w.category, motorpatch.MotorpatchWarning)]


def _the_rest_restored(before: dict[str, Any]) -> list[str]:
    now = _now()
    return [t for t in before if t != TARGET and now[t] is not before[t]]


def _plain(ours: Any) -> Callable[..., Any]:
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        return ours(self, *args, **kwargs)

    return traced


def _wraps(ours: Any) -> Callable[..., Any]:
    @functools.wraps(ours)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        return ours(self, *args, **kwargs)

    return traced


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_plain, "which is not a wrapt wrapper around motorpatch's"),
        (_wraps, "which calls motorpatch's wrapper but is not a wrapt wrapper"),
    ],
    ids=["plain-assignment", "functools-wraps"],
)
def test_a_plain_replacement_is_left_in_place_reported_and_the_rest_restored(
    originals: dict[str, Any], make: Callable[[Any], Callable[..., Any]], why: str
) -> None:
    motorpatch.install()
    traced = make(vars(Pool)["_get_conn"])
    Pool._get_conn = traced  # type: ignore[method-assign]
    reported = _uninstall_recording()
    assert not motorpatch.is_installed()
    assert _the_rest_restored(originals) == []
    assert vars(Pool)["_get_conn"] is traced  # theirs, left in place
    assert [w.category for w in reported] == [motorpatch.RestoreWarning]
    message = str(reported[0].message)
    assert f"{TARGET} " in message and "traced" in message and why in message
    assert "restored every patched PyMongo attribute but 1" in message
    motorpatch.install()  # and motorpatch can be installed again afterwards
    motorpatch.uninstall()


def test_a_wrapt_wrapper_on_top_stays_and_ours_is_spliced_out_beneath_it(
    originals: dict[str, Any],
) -> None:
    motorpatch.install()
    ours = vars(Pool)["_get_conn"]
    calls: list[str] = []

    def tracer(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
        calls.append("traced")
        return wrapped(*args, **kwargs)

    theirs = wrapt.wrap_function_wrapper(pymongo.synchronous.pool, "Pool._get_conn", tracer)
    try:
        assert _uninstall_recording() == []  # nothing to report: it was restored beneath theirs
        assert not motorpatch.is_installed()
        now = vars(Pool)["_get_conn"]
        assert now is theirs  # their wrapper stays...
        assert now.__wrapped__ is not ours  # ...and ours was spliced out beneath it
        assert now.__wrapped__ is originals[TARGET]
        assert _the_rest_restored(originals) == []
    finally:
        wrapt.unwrap_object(pymongo.synchronous.pool, "Pool._get_conn", theirs)


class _Raising:
    """A replacement whose ``__wrapped__`` raises (a proxy whose target was torn down)."""

    @property
    def __wrapped__(self) -> Any:
        raise RuntimeError("the tracer's state is gone")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not called here")


def test_a_replacement_that_raises_does_not_stop_uninstall(originals: dict[str, Any]) -> None:
    motorpatch.install()
    Pool._get_conn = _Raising()  # type: ignore[method-assign,assignment]
    reported = _uninstall_recording()
    assert not motorpatch.is_installed()
    assert _the_rest_restored(originals) == []
    assert [w.category for w in reported] == [motorpatch.RestoreWarning]
    message = str(reported[0].message)
    assert f"{TARGET} holds a _Raising object" in message
    assert "RuntimeError: the tracer's state is gone" in message


def test_a_left_over_wrapper_passes_calls_to_the_original_after_uninstall(
    originals: dict[str, Any], make_client: Any, coll: Any
) -> None:
    """The tracer's function still calls motorpatch's wrapper after uninstall(): green code
    then gets PyMongo's plain checkout (a new connection keeps its plain socket)."""
    import asyncio

    from motorpatch.socket_shim import GreenSocket
    from tests.support.loops import run_on
    from tests.support.pymongo_compat import pooled_socket

    motorpatch.install()
    Pool._get_conn = _plain(vars(Pool)["_get_conn"])  # type: ignore[method-assign]
    _uninstall_recording()
    client = make_client()  # made after uninstall: plain sockets
    c = client[coll.database.name][coll.name]

    @motorpatch.green
    def find() -> Any:
        return c.find_one({})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", motorpatch.BlockingCallWarning)
        run_on("asyncio", lambda: asyncio.gather(find()), timeout=30)
    socks = [pooled_socket(c) for s in client._topology._servers.values() for c in s.pool.conns]
    assert socks and all(type(sock) is not GreenSocket for sock in socks)

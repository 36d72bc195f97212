"""motorpatch's pytest plugin, for your own app's tests (opt-in).

Enable it with ``-p motorpatch.testing`` or ``pytest_plugins = ["motorpatch.testing"]``
(``pip install 'motorpatch[testing]'`` brings nx-27017 for the server). It gives:

- ``mongodb_uri`` (session): ``MONGODB_URI`` when set, else an embedded
  nx-27017 on a free loopback port; ``mongo_client``: a ``MongoClient`` on it,
  closed after the test. :class:`EmbeddedServer` is that server, for a test
  that needs one of its own (a restart, a second server).
- ``@pytest.mark.green``: run a synchronous test function as green code on a
  running event loop, as your app runs it (``loop="uvloop"``; ``max_loop_ms=N``
  fails the test when the loop stalls longer); motorpatch is installed first.
- :func:`assert_loop_responsive` (and the ``loop_responsive`` fixture, the
  same function): fail naming the worst stall and its call site.
- Between tests: a green call left parked on a loop that was closed without
  cancelling it is an error of that test, and is ended so that its pool slot
  is free for the next test.

docs/testing.md has the reference and a worked example.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import motorpatch
from motorpatch.testing import _loops
from motorpatch.testing._responsive import LoopWatch, assert_loop_responsive, watching
from motorpatch.testing._server import EmbeddedServer

__all__ = ["EmbeddedServer", "LoopWatch", "assert_loop_responsive"]

_installed_here = False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "green(loop='asyncio', max_loop_ms=None): run this synchronous test as green code on a "
        "running event loop (motorpatch.testing)",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    global _installed_here
    if _installed_here:
        _installed_here = False
        # Green calls still in flight on an open loop: uninstall() refuses; leave it patched.
        with contextlib.suppress(RuntimeError):
            motorpatch.uninstall()


def _ensure_installed() -> None:
    global _installed_here
    if not motorpatch.is_installed():
        motorpatch.install()
        _installed_here = True


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    marker = pyfuncitem.get_closest_marker("green")
    if marker is None:
        return None
    fn = pyfuncitem.obj
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise pytest.UsageError(
            f"{pyfuncitem.nodeid}: @pytest.mark.green runs a *synchronous* test as green code, "
            "but this test is 'async def'. Remove the marker (an async test runs on its own "
            "loop with pytest-asyncio or anyio), or make the test a plain 'def'."
        )
    for other in ("asyncio", "anyio"):
        if pyfuncitem.get_closest_marker(other) is not None:
            raise pytest.UsageError(
                f"{pyfuncitem.nodeid}: @pytest.mark.green and @pytest.mark.{other} both want "
                "to run this test on their own event loop; keep one of them."
            )
    unknown = set(marker.kwargs) - {"loop", "max_loop_ms"}
    if marker.args or unknown:
        raise pytest.UsageError(
            f"{pyfuncitem.nodeid}: @pytest.mark.green takes only the keyword arguments "
            f"loop='asyncio'|'uvloop' and max_loop_ms=N; got {marker.args or sorted(unknown)}."
        )
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    _ensure_installed()
    max_loop_ms = marker.kwargs.get("max_loop_ms")
    if max_loop_ms is not None:
        assert_loop_responsive(max_loop_ms)  # checks it before the test runs
    body: Callable[..., Any] = fn
    if max_loop_ms is not None:

        def body(**kw: Any) -> Any:
            with watching(max_loop_ms, fn):
                return fn(**kw)

    _loops.run_green(body, kwargs, marker.kwargs.get("loop", "asyncio"))
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield  # every fixture, and the loops of pytest-asyncio or anyio, are finished
    left = _loops.abandoned()
    if not left:
        return
    names = ", ".join(_loops.describe(t) for t in left)
    ended = [t for t in left if _loops.end(t)]
    raise pytest.fail.Exception(
        f"{item.nodeid} left {len(left)} green call(s) parked on an event loop that was "
        f"closed without cancelling them: {names}. Such a call would keep its pooled "
        f"connection and pool slot for the rest of the session; motorpatch.testing ended "
        f"{len(ended)} of them. Await or cancel every green call before the test's loop "
        "closes (asyncio.run, asyncio.Runner and pytest-asyncio cancel what is left; a loop "
        "closed by hand with loop.close() does not).",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    """A MongoDB URI: ``MONGODB_URI`` when set, else an embedded nx-27017 for the session."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    server = EmbeddedServer().start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def mongo_client(mongodb_uri: str) -> Iterator[Any]:
    """A ``pymongo.MongoClient`` on ``mongodb_uri``, closed after the test."""
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongodb_uri, serverSelectionTimeoutMS=10_000
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def loop_responsive() -> Callable[..., Any]:
    """:func:`assert_loop_responsive`, as a fixture: ``with loop_responsive(max_ms=50): ...``."""
    return assert_loop_responsive

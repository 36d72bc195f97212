"""The parity harness: one scenario, run in plain PyMongo and in green code, same outcome.

``parity.check(scenario)`` runs ``scenario(collection)`` twice against the same
server, each time on a fresh collection of a fresh client:

- *plain*: called directly, no event loop anywhere (a script);
- *green*: inside ``@motorpatch.green``, awaited on a running asyncio loop.

motorpatch is installed for both (``blocking="raise"``: PyMongo reached on the
loop's thread outside green code fails the test). The two outcomes (the
returned value, or the exception's class and message) must be equal after
normalisation: the per-run collection name becomes ``<coll>``; ObjectIds and
datetimes are replaced only when the scenario asks (``ids=True``) because they
are generated per run.

The harness also proves each mode really ran as claimed, so a parity test can
fail when green code silently falls back to blocking PyMongo: in the green run
``green_loop()`` is the running loop during the scenario, the loop iterated
while the scenario waited, and every pooled connection of the green client is
a ``GreenSocket``; in the plain run none of that is true.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from bson import ObjectId

import motorpatch
from motorpatch.bridge import green_loop
from motorpatch.socket_shim.green_socket import GreenSocket
from tests.support.loops import run_on
from tests.support.pymongo_compat import pooled_socket

PARITY_DB = "motorpatch_parity"
MODES = ("plain", "green")


@dataclass
class Env:
    """What one run of a scenario gets: its argument, the client to inspect, names to hide."""

    arg: Any
    client: Any
    tokens: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """A scenario's result after normalisation: a value, or an exception's class and message."""

    value: Any = None
    error: type[BaseException] | None = None
    message: str | None = None

    def __repr__(self) -> str:
        if self.error is None:
            return f"Outcome(value={self.value!r})"
        return f"Outcome(error={self.error.__name__}, message={self.message!r})"


@dataclass
class _Evidence:
    green_loops: list[Any] = field(default_factory=list)
    ticks: int = 0


def pooled_sockets(client: Any) -> list[Any]:
    """The raw sockets of every connection idle in the client's pools."""
    socks = []
    for server in client._get_topology()._servers.values():
        socks.extend(pooled_socket(conn) for conn in server.pool.conns)
    return socks


def normalize(value: Any, tokens: list[str], ids: bool) -> Any:
    """``value`` with the run's names hidden (and, if ``ids``, ObjectIds and datetimes)."""
    if isinstance(value, str):
        for token in tokens:
            value = value.replace(token, "<coll>")
        if ids:
            value = re.sub(r"\b[0-9a-f]{24}\b", "<oid>", value)
        return value
    if ids and isinstance(value, ObjectId | datetime.datetime):
        return "<oid>" if isinstance(value, ObjectId) else "<datetime>"
    if isinstance(value, dict):
        return {normalize(k, tokens, ids): normalize(v, tokens, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, tokens, ids) for v in value]
    if isinstance(value, tuple):
        return tuple(normalize(v, tokens, ids) for v in value)
    return value


class Parity:
    Env = Env  # for tests that build their own env (there is more than one "conftest" module)

    def __init__(self, make_client: Any) -> None:
        self._make_client = make_client
        self.modes_run: list[str] = []
        # nx-27017 (no MONGODB_URI) differs from MongoDB in places; tests that assert
        # MongoDB's answer there also accept nx's, named, and parity is checked either way.
        self.nx = not os.environ.get("MONGODB_URI")

    @contextlib.contextmanager
    def collection_env(self, mode: str, **client_options: Any) -> Iterator[Env]:
        """A fresh collection on a fresh client; the collection is dropped after."""
        client = self._make_client(**client_options)
        name = f"p_{mode}_{uuid.uuid4().hex[:10]}"
        coll = client[PARITY_DB][name]
        try:
            yield Env(coll, client, [name])
        finally:
            coll.drop()

    def run(
        self,
        mode: str,
        scenario: Callable[[Any], Any],
        env: Callable[[str], contextlib.AbstractContextManager[Env]] | None = None,
        *,
        ids: bool = False,
        message: bool = True,
        loop_kind: str = "asyncio",
        client_options: dict[str, Any] | None = None,
    ) -> Outcome:
        """Run ``scenario`` once in ``mode`` ("plain" or "green"); check the mode was real."""
        make_env = env or functools.partial(self.collection_env, **(client_options or {}))
        evidence = _Evidence()
        with make_env(mode) as e:
            if mode == "plain":
                outcome = self._capture(lambda: self._traced(scenario, e.arg, evidence), e, ids)
            else:
                outcome = self._green(scenario, e, evidence, ids, loop_kind)
            socks = pooled_sockets(e.client)
        if not message:
            outcome.message = None
        self._verify(mode, evidence, socks, outcome)
        self.modes_run.append(mode)
        return outcome

    def check(
        self,
        scenario: Callable[[Any], Any],
        env: Callable[[str], contextlib.AbstractContextManager[Env]] | None = None,
        **options: Any,
    ) -> Outcome:
        """Run ``scenario`` plain, then green; assert equal outcomes; return the plain one."""
        plain = self.run("plain", scenario, env, **options)
        green = self.run("green", scenario, env, **options)
        assert green == plain, (
            f"green code differs from plain PyMongo:\n  plain {plain}\n  green {green}"
        )
        return plain

    # -- internals ----------------------------------------------------------------------
    @staticmethod
    def _traced(scenario: Callable[[Any], Any], arg: Any, evidence: _Evidence) -> Any:
        evidence.green_loops.append(green_loop())
        try:
            return scenario(arg)
        finally:
            evidence.green_loops.append(green_loop())

    @staticmethod
    def _capture(call: Callable[[], Any], e: Env, ids: bool) -> Outcome:
        try:
            value = call()
        except AssertionError:
            raise  # a scenario's own check failed: not an outcome to compare
        except Exception as exc:
            return Outcome(error=type(exc), message=normalize(str(exc), e.tokens, ids))
        return Outcome(value=normalize(value, e.tokens, ids))

    def _green(
        self, scenario: Callable[[Any], Any], e: Env, evidence: _Evidence, ids: bool, kind: str
    ) -> Outcome:
        run_green = motorpatch.green(self._traced)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0)
                evidence.ticks += 1

        async def main() -> Outcome:
            tick = asyncio.ensure_future(ticker())
            await asyncio.sleep(0)  # let the ticker start, so only ticks during the run count
            start = evidence.ticks
            try:
                return await self._capture_async(run_green(scenario, e.arg, evidence), e, ids)
            finally:
                evidence.ticks -= start
                tick.cancel()

        return run_on(kind, main)

    @staticmethod
    async def _capture_async(awaitable: Any, e: Env, ids: bool) -> Outcome:
        try:
            value = await awaitable
        except AssertionError:
            raise
        except Exception as exc:
            return Outcome(error=type(exc), message=normalize(str(exc), e.tokens, ids))
        return Outcome(value=normalize(value, e.tokens, ids))

    @staticmethod
    def _verify(mode: str, evidence: _Evidence, socks: list[Any], outcome: Outcome) -> None:
        green = [type(s) is GreenSocket for s in socks]
        if mode == "plain":
            assert evidence.green_loops == [None, None], "the plain run ran as green code"
            assert not any(green), "the plain run left a GreenSocket in its pool"
            return
        assert len(evidence.green_loops) == 2, evidence.green_loops
        assert all(loop is not None for loop in evidence.green_loops), (
            f"the scenario did not run as green code: green_loop() was {evidence.green_loops}"
        )
        assert evidence.ticks > 0, "the loop never ran while the green scenario waited"
        # A failed operation may discard its connection; a successful run leaves one.
        assert socks or outcome.error, "the green run left no pooled connection to inspect"
        assert all(green), f"pooled sockets of the green run: {[type(s) for s in socks]}"


@pytest.fixture
def parity(make_client: Any) -> Iterator[Parity]:
    """The parity harness, with motorpatch installed (blocking PyMongo on the loop raises)."""
    motorpatch.install(blocking="raise")
    try:
        yield Parity(make_client)
    finally:
        motorpatch.uninstall()

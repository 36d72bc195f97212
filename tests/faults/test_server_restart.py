"""A server SIGKILLed under load and restarted on the same port: errors, then recovery.

The test starts its own nx-27017 (never the session's) on a free port. Green
workers (and, on the same client, plain threads) loop inserting a document
with a unique id and reading it back. Once every worker has succeeded, the
server is SIGKILLed while operations are in flight; every failure must be a
``ConnectionFailure`` (AutoReconnect, NetworkTimeout, ServerSelectionTimeout),
the same family in plain and green code. The server is restarted on the same
port once the workers stopped, and the same client must serve green and
plain calls again, with the loop ticking throughout. (The workers stop before
the restart: under this load PyMongo 4.20 itself, with plain threads only,
keeps some workers failing for many seconds after a restart, because each
"connection pool paused" error at checkout marks the server Unknown and
clears the pool again.)
"""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from pymongo.errors import ConnectionFailure

import motorpatch
from tests.support.loops import LagTicker, run_on
from tests.support.servers import NxServer

pytestmark = pytest.mark.usefixtures("installed")

GREEN_WORKERS, THREADS = 20, 2


@pytest.fixture
def own_server() -> Iterator[NxServer]:
    server = NxServer().start()
    try:
        yield server
    finally:
        server.cleanup()


class _Phases:
    """Per worker: successes before the kill, errors after it, successes after the restart."""

    def __init__(self, workers: int) -> None:
        self.cond = threading.Condition()
        self.phase = "before"
        self.ok: dict[str, set[int]] = {"before": set(), "killed": set(), "restarted": set()}
        self.errors: dict[str, list[type[BaseException]]] = {"green": [], "plain": []}
        self.wrong = 0
        self.workers = workers

    def record(self, worker: int, kind: str, result: Any, uid: str) -> None:
        with self.cond:
            if isinstance(result, BaseException):
                self.errors[kind].append(type(result))
            elif result != {"_id": uid}:
                self.wrong += 1
            else:
                self.ok[self.phase].add(worker)
            self.cond.notify_all()

    def all_ok(self, phase: str) -> bool:  # every worker succeeded in ``phase``
        return len(self.ok[phase]) == self.workers

    def wait(self, pred: Any, timeout: float = 60.0) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, timeout), (
                self.phase, {k: sorted(set(range(self.workers)) - v) for k, v in self.ok.items()},
                {k: sorted({e.__name__ for e in v}) for k, v in self.errors.items()},
            )


def _round_trip(coll: Any) -> tuple[Any, str]:
    uid = uuid.uuid4().hex
    try:
        coll.insert_one({"_id": uid})
        return coll.find_one({"_id": uid}), uid
    except Exception as exc:
        return exc, uid


def test_sigkill_and_restart_on_the_same_port_recovers_without_a_new_client(own_server):
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        own_server.uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000, maxPoolSize=10
    )
    coll = client.motorpatch_test.restart
    phases = _Phases(GREEN_WORKERS + THREADS)
    stop = threading.Event()

    @motorpatch.green
    def green_step(worker: int) -> None:
        result, uid = _round_trip(coll)
        phases.record(worker, "green", result, uid)

    def thread_worker(worker: int) -> None:
        while not stop.is_set():
            result, uid = _round_trip(coll)
            phases.record(worker, "plain", result, uid)

    async def green_worker(worker: int) -> None:
        while not stop.is_set():
            await green_step(worker)

    def kill() -> None:
        phases.wait(lambda: phases.all_ok("before"))
        assert own_server.proc is not None
        with phases.cond:
            phases.phase = "killed"
        own_server.proc.send_signal(signal.SIGKILL)  # mid-operation: the workers never pause
        own_server.proc.wait()
        phases.wait(lambda: phases.errors["green"] and phases.errors["plain"])
        stop.set()

    threads = [threading.Thread(target=thread_worker, args=(GREEN_WORKERS + i,))
               for i in range(THREADS)]

    def until_ok(kind: str) -> int:
        """Round trips until one succeeds (the server is back); how many it took."""
        for attempt in range(1, 30):
            result, uid = _round_trip(coll)
            phases.record(-1, kind, result, uid)
            if not isinstance(result, BaseException):
                return attempt
        raise AssertionError(f"no {kind} call succeeded after the restart")

    async def main() -> tuple[LagTicker, list[int]]:
        for t in threads:
            t.start()
        with LagTicker() as ticker:
            await asyncio.gather(asyncio.to_thread(kill),
                                 *[green_worker(w) for w in range(GREEN_WORKERS)])
            for t in threads:
                await asyncio.to_thread(t.join, 30)
            restarted = await asyncio.to_thread(NxServer(port=own_server.port).start)
            own_server.proc = restarted.proc
            with phases.cond:
                phases.phase = "restarted"
            attempts = await asyncio.gather(
                asyncio.to_thread(until_ok, "plain"),
                *[motorpatch.green(until_ok)("green") for _ in range(GREEN_WORKERS)],
            )
        return ticker, attempts

    try:
        ticker, attempts = run_on("asyncio", main, timeout=120)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        client.close()
    print(f"\nRESTART attempts_after_restart={attempts} errors green={len(phases.errors['green'])} "
          f"plain={len(phases.errors['plain'])} kinds="
          f"{sorted({e.__name__ for es in phases.errors.values() for e in es})}")
    assert phases.wrong == 0
    assert all(issubclass(e, ConnectionFailure) for e in phases.errors["green"]), phases.errors
    assert all(issubclass(e, ConnectionFailure) for e in phases.errors["plain"]), phases.errors
    assert ticker.max < 0.3, f"the loop stalled {ticker.max:.3f}s during the restart"

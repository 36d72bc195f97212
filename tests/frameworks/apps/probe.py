"""What every test app's green handler does and reports, and the loop-lag probe.

``find(doc_id)`` does one ``find_one`` with the worker's client (made by
``open_client()`` in the app's start-up, in the serving process) and answers
where it ran: on the main thread (the server's loop thread) or not, in green
code or not, the pid, and the ``time.monotonic()`` at which it started and
finished (the tests check that a burst overlapped).

``start()`` and ``stop()`` are an app's start-up and shut-down hooks (both,
as ``lifespan``, for FastAPI). ``LagProbe`` ticks every 5 ms on the serving loop and keeps the worst
lateness since the last ``take()``: a handler that blocked the loop for the
length of a query shows up there.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pymongo
from greenlet import getcurrent

_client: pymongo.MongoClient[dict[str, Any]] | None = None
_client_pid = 0  # the process that made the client


def open_client() -> None:
    """The worker's client, made in its start-up (never inherited across a fork)."""
    global _client, _client_pid
    _client = pymongo.MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=10000)
    _client_pid = os.getpid()


def close_client() -> None:
    global _client
    if _client is not None:
        _client.close()
        _client = None


def client() -> pymongo.MongoClient[dict[str, Any]]:
    if _client is None:
        raise RuntimeError("open_client() was not called in the app's start-up")
    return _client


def where(started: float, **extra: Any) -> dict[str, Any]:
    return {
        "main_thread": threading.current_thread() is threading.main_thread(),
        "green": getattr(getcurrent(), "motorpatch_loop", None) is not None,
        "pid": os.getpid(),
        "client_pid": _client_pid,
        "started": started,
        "finished": time.monotonic(),
        **extra,
    }


def find(doc_id: str = "x") -> dict[str, Any]:
    """One find_one, reported with where it ran."""
    started = time.monotonic()
    doc = client().motorpatch_frameworks.things.find_one({"_id": doc_id})
    return where(started, doc=doc)


class LagProbe:
    """The worst lateness of a 5 ms timer on the serving loop since the last take()."""

    interval = 0.005

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, time.perf_counter() - before - self.interval)

    def take(self) -> dict[str, float]:
        worst, self.worst = self.worst, 0.0
        return {"worst_lag": worst}


lag = LagProbe()


async def start() -> None:
    """An app's start-up hook, on the serving loop: the worker's client, then the lag probe."""
    open_client()  # per worker, after any fork
    lag.start()


async def stop() -> None:
    """An app's shut-down hook: the lag probe stops, the client closes."""
    lag.stop()
    close_client()


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """An ASGI lifespan (FastAPI's ``lifespan=``): ``start()``, serve, ``stop()``."""
    await start()
    yield
    await stop()

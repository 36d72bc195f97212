"""Fixtures for the fault tests: marked documents, a CMAP recorder, plain-vs-green outcomes.

Every document carries a unique fixed-width ``mark`` string; a query for it
puts those bytes in the request, so the fault proxy can aim a fault at exactly
that operation (``proxy.reset(on="reply", match=mark)``) and the reply can be
checked to be the caller's own.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo import monitoring


class Cmap(monitoring.ConnectionPoolListener):
    """Records CMAP events (connection ids per kind; close reasons) thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.ready: list[int] = []
        self.checked_out: list[int] = []
        self.checked_in: list[int] = []
        self.closed: list[tuple[int, str]] = []
        self.order: list[tuple[str, int]] = []  # ("out" | "closed", connection id), in order
        self.cleared = 0

    def _add(self, bucket: list[Any], item: Any) -> None:
        with self._lock:
            bucket.append(item)
            if bucket is self.checked_out:
                self.order.append(("out", item))
            elif bucket is self.closed:
                self.order.append(("closed", item[0]))
            self._lock.notify_all()

    def connection_ready(self, event: Any) -> None:
        self._add(self.ready, event.connection_id)

    def connection_checked_out(self, event: Any) -> None:
        self._add(self.checked_out, event.connection_id)

    def connection_checked_in(self, event: Any) -> None:
        self._add(self.checked_in, event.connection_id)

    def connection_closed(self, event: Any) -> None:
        self._add(self.closed, (event.connection_id, event.reason))

    def pool_cleared(self, event: Any) -> None:
        with self._lock:
            self.cleared += 1

    def wait_ready(self, n: int, timeout: float = 20.0) -> None:
        with self._lock:
            assert self._lock.wait_for(lambda: len(self.ready) >= n, timeout), self.ready

    def closed_ids(self) -> set[int]:
        with self._lock:
            return {cid for cid, _ in self.closed}

    def used_after_close(self) -> list[int]:
        """Connection ids checked out again after their ConnectionClosedEvent (must be [])."""
        with self._lock:
            closed: set[int] = set()
            bad = []
            for kind, cid in self.order:
                if kind == "closed":
                    closed.add(cid)
                elif cid in closed:
                    bad.append(cid)
            return bad

    def _ignore(self, event: Any) -> None:
        pass

    pool_created = pool_ready = pool_closed = _ignore
    connection_created = connection_check_out_started = connection_check_out_failed = _ignore


@pytest.fixture
def cmap() -> Callable[[], Cmap]:
    """Factory of CMAP recorders to pass in ``event_listeners``."""
    return Cmap


@dataclass
class Marked:
    coll: Any  # the seeded collection (direct client)
    marks: list[str]  # marks[i] is the mark of the document with _id i

    def doc(self, i: int) -> dict[str, Any]:
        return {"_id": i, "mark": self.marks[i]}


@pytest.fixture
def marked(coll: Any) -> Marked:
    """The test collection holding 200 documents ``{"_id": i, "mark": <unique>}``."""
    tag = uuid.uuid4().hex[:8]
    marks = [f"mk-{tag}-{i:05d}" for i in range(200)]
    coll.insert_many([{"_id": i, "mark": m} for i, m in enumerate(marks)])
    coll.create_index("mark")
    return Marked(coll, marks)


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return type(exc)


@pytest.fixture
def outcome() -> Callable[[Callable[[], Any]], Any]:
    """``outcome(fn)``: ``fn()``'s result, or the class of the exception it raised."""
    return _outcome


@pytest.fixture
def env(proxy: Any, make_client: Any, marked: Marked) -> SimpleNamespace:
    """The usual kit in one: ``proxy``, ``make_client``, ``marked``, ``cmap``, ``outcome``."""
    return SimpleNamespace(
        proxy=proxy, make_client=make_client, marked=marked, cmap=Cmap, outcome=_outcome
    )


_INJECTED: Counter[str] = Counter()  # faults the proxy injected in this directory's tests


@pytest.fixture(autouse=True)
def _tally_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    proxy = request.getfixturevalue("proxy") if "proxy" in request.fixturenames else None
    yield
    if proxy is not None:
        _INJECTED.update(proxy.faults)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _INJECTED:
        kinds = " ".join(f"{k}={v}" for k, v in sorted(_INJECTED.items()))
        terminalreporter.write_line(f"FAULTS injected by the proxy: {kinds}")

"""mockupdb topologies for the deployment tests: a three-member replica set and two mongos.

Every member is a real MockupDB wire-protocol server on 127.0.0.1 whose
``hello`` reply is computed from shared state, the way a real replica set
reports itself: the same ``setName`` and ``hosts`` everywhere, the current
``primary`` (if any), ``isWritablePrimary``/``secondary`` flags, a growing
``electionId`` per election, and per-member ``tags``.

Data commands (insert, find, update, delete) are answered by one handler:

- ``find`` returns one document ``{"_id": 0, "member": <name>}`` naming the
  member that answered, so a test sees where a read went;
- a write or a primary-only read reaching a member that is not primary gets
  the error reply a real server sends (NotWritablePrimary 10107, or
  NotPrimaryNoSecondaryOk 13435 for reads), with the ``RetryableWriteError``
  label when the command is a retryable write (it carries ``txnNumber``);
- ``hold`` withholds replies (the requests are kept, in flight) until the
  test releases them or steps the primary down: then each held request is
  answered per its ``comment`` (``...-error``: the error reply above,
  ``...-hangup``: the connection is reset);
- ``delay`` answers data commands that many seconds later, from a scheduler
  thread (MockupDB handles one request per server at a time; sleeping in its
  handler would serialise every connection).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from mockupdb import MockupDB

WIRE = {"minWireVersion": 0, "maxWireVersion": 21, "logicalSessionTimeoutMinutes": 30}
DATA_COMMANDS = ("insert", "find", "update", "delete")
NOT_PRIMARY = {"code": 10107, "codeName": "NotWritablePrimary", "errmsg": "not primary"}
NOT_PRIMARY_READ = {
    "code": 13435,
    "codeName": "NotPrimaryNoSecondaryOk",
    "errmsg": "not primary and secondaryOk=false",
}


class Scheduler:
    """One thread running callbacks at their due time (replies sent late, in order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], Any]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="reply-scheduler", daemon=True)
        self._thread.start()

    def later(self, delay: float, fn: Callable[[], Any]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            with contextlib.suppress(OSError):  # the client or the test closed it meanwhile
                fn()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(10)


def command_name(request: Any) -> str:
    return str(next(iter(request.doc)))


@dataclass
class Member:
    """One MockupDB playing a mongod or mongos, with what it received."""

    name: str
    server: MockupDB
    tags: dict[str, str] = field(default_factory=dict)
    received: Counter[str] = field(default_factory=Counter)
    stopped: bool = False

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.server.stop()


class Topology:
    """State and request handling shared by the members of one deployment."""

    def __init__(self, n: int, tags: list[dict[str, str]] | None = None) -> None:
        self.lock = threading.Condition()
        self.scheduler = Scheduler()
        self.delay = 0.0
        self.hold = False
        self.held: list[tuple[Member, Any]] = []
        self.log: list[tuple[str, str, str | None]] = []  # (member, command, comment)
        self.members: list[Member] = []
        for i in range(n):
            member = Member(f"m{i}", MockupDB(), (tags or [{}] * n)[i])
            member.server.autoresponds(lambda req, m=member: self._respond(m, req))
            member.server.run()
            self.members.append(member)

    # -- overridden per deployment kind -----------------------------------------------
    def hello(self, member: Member) -> dict[str, Any]:
        raise NotImplementedError

    def accepts(self, member: Member, request: Any) -> bool:
        return True

    # -- request handling (MockupDB's server threads) -----------------------------------
    def _respond(self, member: Member, request: Any) -> bool:
        name = command_name(request)
        if name.lower() in ("hello", "ismaster"):
            with self.lock:
                reply = self.hello(member)
            return bool(request.ok(**reply))
        member.received[name] += 1
        if name not in DATA_COMMANDS:
            return bool(request.ok())
        with self.lock:
            self.log.append((member.name, name, request.doc.get("comment")))
            if self.hold:
                self.held.append((member, request))
                self.lock.notify_all()
                return True
        if self.delay:
            self.scheduler.later(self.delay, lambda: self.answer(member, request))
        else:
            self.answer(member, request)
        return True

    def answer(self, member: Member, request: Any, failure: str | None = None) -> None:
        """Reply to a data command: normally, or with ``failure`` ("error" or "hangup")."""
        name = command_name(request)
        with self.lock:
            accepts = self.accepts(member, request)
        if failure == "hangup":
            request.hangup()
        elif failure == "error" or not accepts:
            labels = ["RetryableWriteError"] if "txnNumber" in request.doc else []
            body = NOT_PRIMARY_READ if name == "find" else NOT_PRIMARY
            request.replies(ok=0, errorLabels=labels, **body)
        elif name == "find":
            ns = f"{request.doc.get('$db', 'db')}.{request.doc['find']}"
            batch = [{"_id": 0, "member": member.name}]
            request.ok(cursor={"id": 0, "ns": ns, "firstBatch": batch})
        else:
            request.ok(n=1 if name == "insert" else 0, nModified=0)

    # -- control, from the test ------------------------------------------------------------
    def wait_held(self, n: int, timeout: float = 20.0) -> None:
        """Block until ``n`` data commands are held (in flight, unanswered)."""
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.held) >= n, timeout):
                raise TimeoutError(f"{len(self.held)} requests held, waited for {n}")

    def release(self, which: Callable[[Member], bool] = lambda m: True) -> None:
        """Stop holding; answer the held requests of the members ``which`` selects."""
        with self.lock:
            self.hold = False
            mine = [(m, r) for m, r in self.held if which(m)]
            self.held = [(m, r) for m, r in self.held if not which(m)]
        for member, request in mine:
            with contextlib.suppress(OSError):
                self.answer(member, request)

    def close(self) -> None:
        close_all([self])

    def _quiesce(self) -> None:
        with self.lock:
            self.hold = False
            self.held.clear()
        self.scheduler.stop()

    def received(self, command: str) -> dict[str, int]:
        return {m.name: m.received[command] for m in self.members}


def close_all(topologies: list[Topology]) -> None:
    """Stop every member of every topology, in parallel.

    ``MockupDB.stop()`` joins its accept thread, which polls once a second:
    one by one, a replica set would take three seconds to stop.
    """
    for topology in topologies:
        topology._quiesce()
    stoppers = [
        threading.Thread(target=member.stop, name=f"stop-{member.name}")
        for topology in topologies
        for member in topology.members
    ]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(30)


def _failure_of(request: Any) -> str | None:
    comment = str(request.doc.get("comment", ""))
    return comment.rsplit("-", 1)[-1] if comment.endswith(("-error", "-hangup")) else None


class ReplicaSet(Topology):
    """Three members, ``setName`` "rs"; member 0 primary unless ``primary`` says otherwise."""

    def __init__(self, primary: int | None = 0) -> None:
        super().__init__(3, [{"dc": "east"}, {"dc": "east"}, {"dc": "west"}])
        self.primary: int | None = primary
        self.election = 1
        self.stepped_down = threading.Event()
        self.elected_at: float | None = None
        self._timers: list[threading.Timer] = []

    @property
    def uri(self) -> str:
        hosts = ",".join(m.host for m in self.members)
        return f"mongodb://{hosts}/?replicaSet=rs&heartbeatFrequencyMS=500"

    def hello(self, member: Member) -> dict[str, Any]:
        index = self.members.index(member)
        reply: dict[str, Any] = {
            **WIRE,
            "helloOk": True,
            "setName": "rs",
            "setVersion": 1,
            "hosts": [m.host for m in self.members],
            "me": member.host,
            "isWritablePrimary": index == self.primary,
            "ismaster": index == self.primary,
            "secondary": index != self.primary,
            "tags": member.tags,
        }
        if self.primary is not None:
            reply["primary"] = self.members[self.primary].host
        if index == self.primary:
            reply["electionId"] = ObjectId(f"{self.election:024x}")
        return reply

    def accepts(self, member: Member, request: Any) -> bool:
        if self.primary is not None and member is self.members[self.primary]:
            return True
        name = command_name(request)
        return name == "find" and "$readPreference" in request.doc

    def elect(self, index: int) -> None:
        with self.lock:
            self.election += 1
            self.primary = index
            self.elected_at = time.monotonic()

    def step_down(self, new_primary: int, election_after: float) -> float:
        """The primary steps down now: no primary until ``new_primary`` wins, later.

        Every held request is answered as its comment says (error reply or
        connection reset); ``election_after`` seconds later ``new_primary``
        becomes primary. Returns the monotonic time of the step-down.
        """
        with self.lock:
            self.primary = None
            self.election += 1
            held, self.held, self.hold = self.held, [], False
        at = time.monotonic()
        for member, request in held:
            with contextlib.suppress(OSError):
                self.answer(member, request, _failure_of(request) or "error")
        timer = threading.Timer(election_after, self.elect, (new_primary,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        self.stepped_down.set()
        return at

    def _quiesce(self) -> None:
        for timer in self._timers:
            timer.cancel()
        super()._quiesce()


class Routers(Topology):
    """Two mongos routers (``msg: "isdbgrid"``)."""

    def __init__(self) -> None:
        super().__init__(2)

    @property
    def uri(self) -> str:
        hosts = ",".join(m.host for m in self.members)
        return f"mongodb://{hosts}/?heartbeatFrequencyMS=500&localThresholdMS=1000"

    def hello(self, member: Member) -> dict[str, Any]:
        return {**WIRE, "helloOk": True, "ismaster": True, "isWritablePrimary": True,
                "msg": "isdbgrid"}  # fmt: skip


@pytest.fixture
def replica_set() -> Iterator[Callable[..., ReplicaSet]]:
    """Factory: ``replica_set(primary=0 | None)`` -> a running ReplicaSet; all closed after."""
    made: list[ReplicaSet] = []

    def make(primary: int | None = 0) -> ReplicaSet:
        rs = ReplicaSet(primary)
        made.append(rs)
        return rs

    yield make
    close_all(list(made))


@pytest.fixture
def make_routers() -> Iterator[Callable[[], Routers]]:
    """Factory: ``make_routers()`` -> two running mongos routers; all closed after."""
    made: list[Routers] = []

    def make() -> Routers:
        made.append(Routers())
        return made[-1]

    yield make
    close_all(list(made))


@pytest.fixture
def routers(make_routers: Callable[[], Routers]) -> Routers:
    """Two running mongos routers, closed after."""
    return make_routers()


@pytest.fixture
def new_client() -> Iterator[Callable[..., Any]]:
    """Factory: ``new_client(uri, **options)`` -> a MongoClient; all closed after."""
    made: list[Any] = []

    def make(uri: str, **kwargs: Any) -> Any:
        kwargs.setdefault("serverSelectionTimeoutMS", 10000)
        client: Any = pymongo.MongoClient(uri, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()

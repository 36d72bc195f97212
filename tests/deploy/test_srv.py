"""mongodb+srv:// URIs: where PyMongo's SRV and TXT lookups run, and what they block.

DNS is served for real, over UDP, by a tiny nameserver on 127.0.0.1 (the
records point at two MockupDB mongos routers); ``dns.resolver.resolve``,
the entry point PyMongo calls, is redirected to a resolver that asks that
nameserver and notes which thread asked. Found on PyMongo 4.20:

- the lookups run in ``MongoClient._get_topology()``: at construction
  (``connect=True``, the default) or at the first operation
  (``connect=False``), on the calling thread;
- later polls run on PyMongo's SRV polling thread, never on the loop;
- so a client constructed in green code (or a ``connect=False`` client
  first used there) would resolve SRV and TXT *on the loop's thread*, blocking
  the loop for the whole DNS round trips; motorpatch's ``patches/dns.py`` runs
  those lookups in the loop's thread pool and parks instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pymongo
import pymongo.common
import pytest

import motorpatch
from tests.support.loops import LagTicker, run_on

pytestmark = [
    pytest.mark.usefixtures("installed"),
    pytest.mark.skipif(
        pymongo.version_tuple[:2] < (4, 19),
        reason="SRV records naming 127.0.0.1 need srv_host_validator (PyMongo 4.19+)",
    ),
]

FQDN = "cluster.example.test"


class Nameserver:
    """A UDP nameserver on 127.0.0.1 answering from ``records``, ``delay`` seconds late."""

    def __init__(self, records: dict[tuple[str, str], list[str]], ttl: int = 1) -> None:
        self.records, self.ttl, self.delay = records, ttl, 0.0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="nameserver", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            wire, addr = self.sock.recvfrom(4096)
            if not wire:
                return  # close() woke us
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True)
            rdtype = dns.rdatatype.to_text(question.rdtype)
            answers = self.records.get((name, rdtype))
            if answers:
                response.answer.append(
                    dns.rrset.from_text(question.name, self.ttl, "IN", rdtype, *answers)
                )
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            timer = threading.Timer(self.delay, self._send, (response.to_wire(), addr))
            timer.daemon = True
            timer.start()

    def _send(self, wire: bytes, addr: Any) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(wire, addr)

    def close(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", ("127.0.0.1", self.port))
        self._thread.join(5)
        self.sock.close()


class Lookups:
    """The patched ``dns.resolver.resolve``: asks the nameserver, notes who asked."""

    def __init__(self, nameserver: Nameserver) -> None:
        self.resolver = dns.resolver.Resolver(configure=False)
        self.resolver.nameservers = ["127.0.0.1"]
        self.resolver.port = nameserver.port
        self.seen: list[tuple[str, str, str, float]] = []  # qname, rdtype, thread, time
        self.polled = threading.Event()

    def __call__(self, qname: Any, rdtype: Any = "A", *args: Any, **kwargs: Any) -> Any:
        thread = threading.current_thread().name
        self.seen.append((str(qname), str(rdtype), thread, time.monotonic()))
        try:
            return self.resolver.resolve(qname, rdtype, *args, **kwargs)
        finally:
            if "srv" in thread:
                self.polled.set()

    def threads(self) -> set[str]:
        return {t for _, _, t, _ in self.seen}


@pytest.fixture
def srv(routers: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Lookups, Any]]:
    """(mongodb+srv URI, lookup recorder, nameserver) for the two mongos routers."""
    ns = Nameserver(
        {
            (f"_mongodb._tcp.{FQDN}", "SRV"): [
                f"0 0 {m.server.port} 127.0.0.1." for m in routers.members
            ],
            (FQDN, "TXT"): ['"authSource=admin"'],
        }
    )
    lookups = Lookups(ns)
    monkeypatch.setattr(dns.resolver, "resolve", lookups)
    try:
        yield f"mongodb+srv://{FQDN}/?tls=false&heartbeatFrequencyMS=500", lookups, ns
    finally:
        ns.close()


async def _ticking(ticker: LagTicker) -> None:
    """Return once the ticker has ticked: a block right after this shows up as lag."""
    while len(ticker.lags) < 3:
        await asyncio.sleep(0.001)


def _srv_client(new_client: Any, uri: str, **kwargs: Any) -> Any:
    # The SRV targets are 127.0.0.1; PyMongo's documented hook accepts them.
    return new_client(uri, srv_host_validator=lambda host: host == "127.0.0.1", **kwargs)


def test_lookups_run_at_construction_and_in_the_polling_thread(srv, new_client, monkeypatch):
    uri, lookups, _ = srv
    # PyMongo's own SRV polling tests shorten the 60 s floor between polls the same way.
    monkeypatch.setattr(pymongo.common, "MIN_SRV_RESCAN_INTERVAL", 0.5)
    client = _srv_client(new_client, uri)
    at_construction = [(q, t, th) for q, t, th, _ in lookups.seen]
    assert at_construction == [
        (f"_mongodb._tcp.{FQDN}", "SRV", "MainThread"),
        (FQDN, "TXT", "MainThread"),
    ]
    coll = client.db.c
    loop_thread: list[str] = []

    async def main() -> list[Any]:
        loop_thread.append(threading.current_thread().name)
        docs = await asyncio.gather(*[motorpatch.green(coll.find_one)({"i": i}) for i in range(10)])
        # The poller's next look-up comes from its own thread, while the loop runs.
        assert await asyncio.get_running_loop().run_in_executor(None, lookups.polled.wait, 20)
        return docs

    docs = run_on("asyncio", main, timeout=30)
    assert {d["member"] for d in docs} <= {"m0", "m1"}
    later = {th for _, _, th, _ in lookups.seen[2:]}
    assert later and all("srv" in th for th in later), later
    assert loop_thread[0] not in later


@pytest.mark.parametrize("where", ["constructed in green code", "connect=False, first used"])
def test_srv_lookups_reached_from_green_code_happen_during_the_green_call(srv, new_client, where):
    uri, lookups, ns = srv
    ns.delay = 0.3
    made: list[Any] = []
    early = _srv_client(new_client, uri, connect=False) if where.startswith("connect") else None
    assert lookups.seen == []

    @motorpatch.green
    def work() -> Any:
        client = early or _srv_client(new_client, uri)
        made.append(client)
        return client.db.c.find_one({})

    async def main() -> tuple[Any, float, float, LagTicker]:
        with LagTicker() as ticker:
            await _ticking(ticker)
            start = time.monotonic()
            doc = await work()
            return doc, start, time.monotonic(), ticker

    doc, start, end, ticker = run_on("asyncio", main, timeout=30)
    assert doc["member"] in ("m0", "m1")
    assert [(q, t) for q, t, _, _ in lookups.seen] == [
        (f"_mongodb._tcp.{FQDN}", "SRV"),
        (FQDN, "TXT"),
    ]
    assert all(start <= at <= end for *_, at in lookups.seen)
    print(
        f"\nSRV[{where}] lookups on threads {sorted(lookups.threads())}, "
        f"worst loop lag {ticker.max * 1000:.0f} ms with a {ns.delay * 1000:.0f} ms nameserver"
    )


@pytest.mark.parametrize("where", ["constructed in green code", "connect=False, first used"])
def test_srv_lookups_from_green_code_do_not_block_the_loop(srv, new_client, where):
    uri, lookups, ns = srv
    ns.delay = 0.3
    early = _srv_client(new_client, uri, connect=False) if where.startswith("connect") else None
    loop_thread: list[str] = []

    @motorpatch.green
    def work() -> Any:
        client = early or _srv_client(new_client, uri)
        return client.db.c.find_one({})

    async def main() -> LagTicker:
        loop_thread.append(threading.current_thread().name)
        with LagTicker() as ticker:
            await _ticking(ticker)
            await work()
        return ticker

    ticker = run_on("asyncio", main, timeout=30)
    assert loop_thread[0] not in lookups.threads(), "dnspython ran on the loop's thread"
    assert ticker.max < ns.delay / 3, f"the loop was blocked for {ticker.max:.3f}s"

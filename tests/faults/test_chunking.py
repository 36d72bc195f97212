"""Property: green code decodes every OP_MSG reply exactly, whatever chunks it arrives in.

A loopback peer (``_ChunkingPeer``, a plain-socket server in threads) speaks
just enough of the wire protocol for a direct connection: it answers
``hello`` and answers each ``find`` with a real OP_MSG reply built with
``bson`` (a cursor whose first batch is the example's documents, tagged with
the query's ``tag``), cut into the example's chunk sizes, each chunk sent by
itself (``TCP_NODELAY``; the first chunks paced so they arrive as separate
reads). Several green calls run at once, each with its own tag, so a reply
reaching the wrong caller or a byte lost at a chunk boundary fails the test.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import bson
import pymongo
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import motorpatch
from motorpatch.socket_shim import GreenSocket
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")

_HEADER = struct.Struct("<iiii")
_PACED = 32  # chunks sent with a pause between them; the rest of a reply goes in one piece


def _op_msg(doc: dict[str, Any], response_to: int) -> bytes:
    body = b"\x00\x00\x00\x00\x00" + bson.encode(doc)  # flagBits, section kind 0
    return _HEADER.pack(16 + len(body), 0, response_to, 2013) + body


class _ChunkingPeer:
    """Answers hello and find over OP_MSG, delivering find replies in ``self.chunks`` sizes."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.chunks: list[int] = [65536]
        self.finds = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def close(self) -> None:
        self._listener.close()
        for conn in self._conns:
            conn.close()
        for t in self._threads:
            t.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _recv_exactly(self, conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            part = conn.recv(n - len(buf))
            if not part:
                raise ConnectionError
            buf += part
        return buf

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                length, request_id, _, op = _HEADER.unpack(self._recv_exactly(conn, 16))
                body = self._recv_exactly(conn, length - 16)
                assert op == 2013, op
                cmd = bson.decode(body[5 : 5 + struct.unpack("<i", body[5:9])[0]])
                self._answer(conn, request_id, cmd)
        except (OSError, ConnectionError):
            conn.close()

    def _answer(self, conn: socket.socket, request_id: int, cmd: dict[str, Any]) -> None:
        name = next(iter(cmd))
        if name.lower() in ("hello", "ismaster"):
            conn.sendall(_op_msg(_HELLO, request_id))
            return
        if name != "find":
            conn.sendall(_op_msg({"ok": 1.0}, request_id))
            return
        self.finds += 1
        tag = cmd["filter"]["tag"]
        batch = [{**d, "tag": tag} for d in self.docs]
        ns = f"{cmd['$db']}.{cmd['find']}"
        reply = _op_msg({"cursor": {"id": 0, "ns": ns, "firstBatch": batch}, "ok": 1.0}, request_id)
        pos, i = 0, 0
        while pos < len(reply):
            if i >= _PACED:
                conn.sendall(reply[pos:])
                break
            size = self.chunks[i % len(self.chunks)]
            conn.sendall(reply[pos : pos + size])
            pos, i = pos + size, i + 1
            time.sleep(0.0005)  # pacing, so the client reads this chunk on its own


_HELLO = {
    "ok": 1.0,
    "isWritablePrimary": True,
    "maxBsonObjectSize": 16 * 1024 * 1024,
    "maxMessageSizeBytes": 48000000,
    "maxWriteBatchSize": 100000,
    "minWireVersion": 0,
    "maxWireVersion": 21,
    "logicalSessionTimeoutMinutes": 30,
    "connectionId": 1,
}


@pytest.fixture(scope="module")
def peer() -> Iterator[_ChunkingPeer]:
    p = _ChunkingPeer()
    yield p
    p.close()


@pytest.fixture(scope="module")
def peer_client(peer: _ChunkingPeer) -> Iterator[Any]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{peer.port}/?directConnection=true", serverSelectionTimeoutMS=5000
    )
    yield client
    client.close()


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=50)
    | st.binary(max_size=50),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text("abcxyz", min_size=1, max_size=5), inner, max_size=4),
    max_leaves=10,
)
_docs = st.lists(
    st.dictionaries(st.text("abcdefgh", min_size=1, max_size=8), _values, max_size=6)
    | st.builds(lambda n: {"big": "z" * n}, st.integers(1000, 20000)),
    max_size=5,
)
_chunks = st.lists(st.integers(1, 300), min_size=1, max_size=6) | st.lists(
    st.sampled_from([1, 2, 3, 15, 16, 17]), min_size=1, max_size=4
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(docs=_docs, chunks=_chunks)
def test_green_code_decodes_replies_in_any_chunking(peer, peer_client, docs, chunks) -> None:
    peer.docs, peer.chunks = docs, chunks
    coll = peer_client.db.coll
    find = motorpatch.green(lambda tag: list(coll.find({"tag": tag})))

    async def main() -> list[Any]:
        return await asyncio.gather(*[find(t) for t in range(3)])

    before = peer.finds
    got = run_on("asyncio", main, timeout=30)
    assert got == [[{**d, "tag": t} for d in docs] for t in range(3)]
    assert peer.finds == before + 3
    socks = [c.conn.conn for s in peer_client._topology._servers.values() for c in s.pool.conns]
    assert socks and all(isinstance(s, GreenSocket) for s in socks)

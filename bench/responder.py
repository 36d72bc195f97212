"""A canned-reply MongoDB wire-protocol responder, for measuring clients and not a server.

Run: ``python bench/responder.py [--delay-ms N] [--port 0]``. It listens on 127.0.0.1 only,
prints the port on stdout and stops when stdin reaches EOF (the parent exits) or on SIGTERM.

It answers as a standalone server (maxWireVersion 21, no ``topologyVersion``, so monitors poll
instead of streaming):

- OP_QUERY ``isMaster``/``hello`` (the initial handshake) with OP_REPLY;
- OP_MSG ``hello``/``isMaster``, ``ping``, ``endSessions``; ``find`` on a collection whose name
  starts with ``big`` returns 100 documents of about 1 KB, on ``messages`` the 50 newest posts of
  the demo's message board (examples/messages: ``_id``, ``author``, ``text``, ``created_at``),
  any other ``find`` returns one small document; ``insert`` answers ``n`` = number of documents
  sent; anything else ``{ok: 1}``.

``--delay-ms`` delays every reply except the handshake ``hello`` with ``loop.call_later``, so
other connections are served meanwhile. Replies are encoded once per (command, namespace) and
only the header is packed per request.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import signal
import stat
import struct
import sys
from typing import Any

import bson

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
REPLY_FIELDS = struct.Struct("<iqii")  # responseFlags, cursorID, startingFrom, numberReturned

SMALL_DOC = {"_id": 1, "name": "ada", "age": 36, "tags": ["a", "b"]}
BIG_DOCS = [{"_id": i, "pad": "x" * 1000, "n": i} for i in range(100)]
HANDSHAKE = {"hello", "ismaster"}
# The demo board's GET /api/messages reads a page of 50 (bench/worker_http.py).
_T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
MESSAGES = [
    {"_id": bson.ObjectId(), "author": f"user{i % 7}",
     "text": f"message {i}: " + "lorem ipsum dolor sit amet " * 3,
     "created_at": _T0 - datetime.timedelta(seconds=i)}
    for i in range(50)
]


def hello_reply(connection_id: int) -> dict[str, Any]:
    return {
        "helloOk": True,
        "isWritablePrimary": True,
        "ismaster": True,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "localTime": datetime.datetime.now(datetime.UTC),
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": connection_id,
        "minWireVersion": 0,
        "maxWireVersion": 21,
        "readOnly": False,
        "ok": 1.0,
    }


def command_reply(name: str, body: dict[str, Any], ndocs: int) -> dict[str, Any]:
    """The reply document for a non-handshake command (``name`` is the first key, lowercased)."""
    if name == "find":
        coll = str(body.get("find"))
        batch = (BIG_DOCS if coll.startswith("big")
                 else MESSAGES if coll == "messages" else [SMALL_DOC])
        ns = f"{body.get('$db', 'test')}.{coll}"
        return {"cursor": {"firstBatch": batch, "id": 0, "ns": ns}, "ok": 1.0}
    if name == "insert":
        return {"n": ndocs, "ok": 1.0}
    return {"ok": 1.0}


def msg_body(doc: dict[str, Any]) -> bytes:
    """flagBits + a kind-0 section."""
    return b"\x00\x00\x00\x00\x00" + bson.encode(doc)


def parse_msg(data: memoryview) -> tuple[dict[str, Any], int]:
    """The kind-0 body of an OP_MSG (``data`` without the header) and the kind-1 document count."""
    pos, end = 4, len(data)
    body: dict[str, Any] = {}
    ndocs = 0
    while pos < end:
        kind = data[pos]
        pos += 1
        size = int.from_bytes(data[pos : pos + 4], "little")
        if kind == 0:
            body = bson.decode(data[pos : pos + size])
        else:  # kind 1: size, identifier cstring, documents
            seq_end = pos + size
            p = bytes(data[pos + 4 : seq_end]).index(b"\x00") + pos + 5
            while p < seq_end:
                p += int.from_bytes(data[p : p + 4], "little")
                ndocs += 1
        pos += size
    return body, ndocs


class Responder(asyncio.Protocol):
    delay = 0.0
    connections = 0
    cache: dict[tuple[str, str], bytes] = {}

    def connection_made(self, transport: Any) -> None:
        Responder.connections += 1
        self.connection_id = Responder.connections
        self.transport = transport
        self.buf = bytearray()
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out: list[bytes] = []
        delayed: list[bytes] = []
        while len(buf) >= HEADER.size:
            length, request_id, _, opcode = HEADER.unpack_from(buf)
            if len(buf) < length:
                break
            payload = memoryview(buf)[HEADER.size : length]
            try:
                reply, handshake = self.answer(opcode, request_id, payload)
            finally:
                payload.release()
            del buf[:length]
            (out if handshake or not self.delay else delayed).append(reply)
        if out:
            self.transport.write(b"".join(out))
        if delayed:
            self.loop.call_later(self.delay, self._write_later, b"".join(delayed))

    def _write_later(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def answer(self, opcode: int, request_id: int, payload: memoryview) -> tuple[bytes, bool]:
        if opcode == OP_QUERY:  # the legacy handshake: flags, cstring ns, skip, limit, query
            start = bytes(payload[4:]).index(b"\x00") + 4 + 1 + 8
            size = int.from_bytes(payload[start : start + 4], "little")
            query = bson.decode(payload[start : start + size])
            name = next(iter(query), "").lower()
            doc = hello_reply(self.connection_id) if name in HANDSHAKE else {"ok": 1.0}
            body = REPLY_FIELDS.pack(0, 0, 0, 1) + bson.encode(doc)
            return HEADER.pack(HEADER.size + len(body), 0, request_id, OP_REPLY) + body, True
        body_doc, ndocs = parse_msg(payload)
        name = next(iter(body_doc), "").lower()
        if name in HANDSHAKE:
            body = msg_body(hello_reply(self.connection_id))
        else:
            key = (name, f"{body_doc.get('$db')}.{body_doc.get(next(iter(body_doc), ''))}")
            body = self.cache.get(key) if name != "insert" else None
            if body is None:
                body = msg_body(command_reply(name, body_doc, ndocs))
                if name != "insert":
                    self.cache[key] = body
        header = HEADER.pack(HEADER.size + len(body), 0, request_id, OP_MSG)
        return header + body, name in HANDSHAKE


async def serve(port: int, delay_ms: float) -> None:
    Responder.delay = delay_ms / 1000.0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Responder, "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1() or stop.set())
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if uvloop is not None and not args.no_uvloop:
        uvloop.run(serve(args.port, args.delay_ms))
    else:
        asyncio.run(serve(args.port, args.delay_ms))


if __name__ == "__main__":
    main()

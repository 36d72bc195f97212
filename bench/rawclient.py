"""A minimal hand-written asyncio OP_MSG client: the lower bound for any Python loop client.

No server selection, sessions, retries, monitoring or pool semantics beyond an idle-connection
queue of at most ``max_pool`` connections: encode the command with ``bson``, write it, wait
for the reply on an ``asyncio.Protocol``, decode it. Replies are decoded as fully as PyMongo's
(``bson.decode`` of the whole reply document).
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import Any

import bson

HEADER = struct.Struct("<iiii")
OP_MSG = 2013
_ids = itertools.count(1)


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if len(buf) >= HEADER.size:
            length = int.from_bytes(buf[:4], "little")
            if len(buf) >= length and self.waiter is not None:
                reply = bytes(buf[HEADER.size : length])
                del buf[:length]
                waiter, self.waiter = self.waiter, None
                if not waiter.done():
                    waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("closed"))

    async def command(self, doc: dict[str, Any], docs: list[dict[str, Any]] | None = None) -> Any:
        body = b"\x00\x00\x00\x00\x00" + bson.encode(doc)
        if docs:
            seq = b"documents\x00" + b"".join(bson.encode(d) for d in docs)
            body += b"\x01" + (len(seq) + 4).to_bytes(4, "little") + seq
        header = HEADER.pack(HEADER.size + len(body), next(_ids), 0, OP_MSG)
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(header + body)
        reply = await self.waiter
        return bson.decode(reply[5:])  # flagBits + kind-0 byte


class RawClient:
    def __init__(self, port: int, db: str = "bench", max_pool: int = 100) -> None:
        self.port, self.db, self.max_pool = port, db, max_pool
        self.idle: asyncio.Queue[_Conn] = asyncio.Queue()
        self.opened = 0

    async def _get(self) -> _Conn:
        if self.idle.empty() and self.opened < self.max_pool:
            self.opened += 1
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Conn, "127.0.0.1", self.port)
            return conn
        return await self.idle.get()

    async def command(self, doc: dict[str, Any], docs: list[dict[str, Any]] | None = None) -> Any:
        conn = await self._get()
        try:
            doc["$db"] = self.db
            reply = await conn.command(doc, docs)
        except BaseException:
            conn.transport.close()
            self.opened -= 1
            raise
        self.idle.put_nowait(conn)
        if not reply.get("ok"):
            raise RuntimeError(reply)
        return reply

    async def find_one(self, coll: str) -> Any:
        reply = await self.command({"find": coll, "filter": {}, "limit": 1, "singleBatch": True})
        batch = reply["cursor"]["firstBatch"]
        return batch[0] if batch else None

    async def find(self, coll: str) -> list[Any]:
        reply = await self.command({"find": coll, "filter": {}})
        return list(reply["cursor"]["firstBatch"])

    async def insert_one(self, coll: str, doc: dict[str, Any]) -> Any:
        doc.setdefault("_id", bson.ObjectId())
        return await self.command({"insert": coll, "ordered": True}, [doc])

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().transport.close()


async def raw_op(client: RawClient, workload: str) -> Any:
    if workload == "find_one":
        return await client.find_one("small")
    if workload == "find":
        return await client.find("big")
    return await client.insert_one("ins", {"x": 1, "s": "payload"})

"""FastAPI with SQLAlchemy's asyncio layer (aiosqlite) next to green PyMongo.

``GET /mixed?n=N`` interleaves, in one request: an SQLAlchemy async insert,
a green function (insert and read a MongoDB document), an SQLAlchemy async
read, and a green function that ``motorpatch.await_``s an SQLAlchemy
coroutine. SQLAlchemy's asyncio layer is greenlet-based too (``greenlet_spawn``
and ``await_only``); the answer says what each side saw.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Integer, String, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import motorpatch
from apps import probe


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[str] = mapped_column(String(20), index=True)


motorpatch.install()
_dir = tempfile.mkdtemp(prefix="motorpatch-sqla-")
engine = create_async_engine(
    f"sqlite+aiosqlite:///{os.path.join(_dir, 'app.db')}", connect_args={"timeout": 30}
)
Session = async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await probe.start()
    yield
    await probe.stop()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@motorpatch.green
def mongo_round_trip(n: str) -> dict[str, Any]:
    coll = probe.client().motorpatch_frameworks.sqla
    coll.insert_one({"_id": n, "n": n})
    return probe.where(time.monotonic(), doc=coll.find_one({"_id": n}))


@motorpatch.green
def count_rows_from_green_code(n: str) -> int:
    """Green code waiting for an SQLAlchemy coroutine, then using PyMongo again."""

    async def count() -> int:
        async with Session() as session:
            return int(await session.scalar(select(func.count()).where(Row.n == n)) or 0)

    rows = motorpatch.await_(count())
    probe.client().motorpatch_frameworks.sqla.update_one({"_id": n}, {"$set": {"rows": rows}})
    return rows


@app.get("/mixed")
async def mixed(n: str) -> dict[str, Any]:
    started = time.monotonic()
    async with Session() as session:
        session.add(Row(n=n))
        await session.commit()
    mongo = await mongo_round_trip(n)
    async with Session() as session:
        rows = await session.scalar(select(func.count()).where(Row.n == n))
    rows_seen_by_green = await count_rows_from_green_code(n)
    final = await green_find(n)
    return {
        **probe.where(started),
        "mongo": mongo,
        "rows": rows,
        "rows_seen_by_green": rows_seen_by_green,
        "final": final,
    }


@motorpatch.green
def green_find(n: str) -> Any:
    return probe.client().motorpatch_frameworks.sqla.find_one({"_id": n})


@app.get("/lag")
async def lag() -> dict[str, float]:
    return probe.lag.take()



"""FastAPI for several worker processes: each makes its own client in the lifespan.

Served by ``uvicorn --workers 2`` (spawned workers) or gunicorn with uvicorn
workers (forked from gunicorn's master): this module is imported in every
worker, and nothing here touches MongoDB before the lifespan starts, so no
client crosses a fork.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

import motorpatch
from apps import probe

motorpatch.install()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    probe.open_client()  # per worker, after any fork
    probe.lag.start()
    yield
    probe.lag.stop()
    probe.close_client()


app = FastAPI(lifespan=lifespan)


@app.get("/find")
@motorpatch.green
def find() -> dict[str, Any]:
    return probe.find()


@app.get("/lag")
async def lag() -> dict[str, float]:
    return probe.lag.take()

"""FastAPI for several worker processes: each makes its own client in the lifespan.

Served by ``uvicorn --workers 2`` (spawned workers) or gunicorn with uvicorn
workers (forked from gunicorn's master): this module is imported in every
worker, and nothing here touches MongoDB before the lifespan starts, so no
client crosses a fork.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

import motorpatch
from apps import probe

motorpatch.install()


app = FastAPI(lifespan=probe.lifespan)  # the client is made per worker, after any fork


@app.get("/find")
@motorpatch.green
def find() -> dict[str, Any]:
    return probe.find()


@app.get("/lag")
async def lag() -> dict[str, float]:
    return probe.lag.take()

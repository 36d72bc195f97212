"""Quart: a ``@motorpatch.green`` route under ``@app.get``; client and lag probe at start-up."""

from __future__ import annotations

from typing import Any

from quart import Quart

import motorpatch
from apps import probe

motorpatch.install()
app = Quart(__name__)
app.before_serving(probe.start)
app.after_serving(probe.stop)


@app.get("/find")
@motorpatch.green
def find() -> dict[str, Any]:
    return probe.find()


@app.get("/lag")
async def lag() -> dict[str, float]:
    return probe.lag.take()

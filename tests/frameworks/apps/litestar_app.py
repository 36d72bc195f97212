"""Litestar: a ``@motorpatch.green`` handler under ``@get``; client and lag probe at start-up."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, get

import motorpatch
from apps import probe

motorpatch.install()


@get("/find")
@motorpatch.green
def find() -> dict[str, Any]:
    return probe.find()


@get("/lag")
async def lag() -> dict[str, float]:
    return probe.lag.take()


app = Litestar([find, lag], on_startup=[probe.start], on_shutdown=[probe.stop])

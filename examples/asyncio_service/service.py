"""The order-pricing service: asyncio workers, an ``asyncio.Queue``, legacy PyMongo calls.

``price_order`` is the only new synchronous code: a ``@motorpatch.green``
function that calls the legacy :mod:`~examples.asyncio_service.repository`
as it is, and, in the middle, an *async* library (here a stand-in exchange-rate
client, ``fetch_rate``) through ``motorpatch.await_``. Workers take order ids
from the queue and ``await price_order(...)``; while one waits for MongoDB or
for the rate, the loop runs the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

import motorpatch
from examples.asyncio_service import repository

__all__ = ["RATES", "Result", "fetch_rate", "price_order", "run_service"]

# EUR -> currency, as a remote rate service would answer.
RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85}


async def fetch_rate(currency: str, latency: float = 0.01) -> float:
    """An async client of a remote rate service (simulated: it waits ``latency`` s)."""
    await asyncio.sleep(latency)
    return RATES[currency]


@motorpatch.green
def price_order(db: Database[Any], order_id: str, rate_latency: float = 0.01) -> dict[str, Any]:
    """Price one order: legacy PyMongo reads, an async rate lookup, a legacy update."""
    order = repository.get_order(db, order_id)
    if order is None:
        raise LookupError(f"no order {order_id!r}")
    price = repository.unit_price(db, order["sku"])
    rate = motorpatch.await_(fetch_rate(order["currency"], rate_latency))  # async, from sync
    priced = repository.mark_priced(db, order_id, round(price * order["qty"] * rate, 2))
    return priced if priced is not None else repository.get_order(db, order_id)  # type: ignore[return-value]


@dataclass
class Result:
    priced: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


async def _worker(
    queue: asyncio.Queue[str], db: Database[Any], result: Result, rate_latency: float
) -> None:
    while True:
        order_id = await queue.get()
        try:
            result.priced[order_id] = await price_order(db, order_id, rate_latency)
        except Exception as exc:  # one bad order must not stop the worker
            result.failed[order_id] = f"{type(exc).__name__}: {exc}"
        finally:
            queue.task_done()


async def run_service(
    db: Database[Any], order_ids: Iterable[str], workers: int = 10, rate_latency: float = 0.01
) -> Result:
    """Price every order with ``workers`` concurrent workers; return what happened to each."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for order_id in order_ids:
        queue.put_nowait(order_id)
    result = Result()
    tasks = [asyncio.create_task(_worker(queue, db, result, rate_latency)) for _ in range(workers)]
    try:
        await queue.join()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result

"""The "legacy" order repository: plain synchronous PyMongo, written for scripts and threads.

Nothing here knows about asyncio or motorpatch. The service calls these
functions from green code, where each PyMongo round trip parks the calling
greenlet instead of blocking the event loop; a cron script can keep calling
them in plain code.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database

__all__ = ["add_order", "ensure_indexes", "get_order", "mark_priced", "revenue_by_currency"]

Order = dict[str, Any]


def _orders(db: Database[Order]) -> Collection[Order]:
    return db["orders"]


def ensure_indexes(db: Database[Order]) -> None:
    _orders(db).create_index("status")


def add_order(db: Database[Order], order_id: str, sku: str, qty: int, currency: str) -> Order:
    order = {"_id": order_id, "sku": sku, "qty": qty, "currency": currency, "status": "new"}
    _orders(db).insert_one(order)
    return order


def get_order(db: Database[Order], order_id: str) -> Order | None:
    return _orders(db).find_one({"_id": order_id})


def unit_price(db: Database[Order], sku: str) -> float:
    """The catalogue price in EUR, or 0.0 for an unknown SKU."""
    item = db["catalogue"].find_one({"_id": sku}, {"price": 1})
    return float(item["price"]) if item else 0.0


def mark_priced(db: Database[Order], order_id: str, total: float) -> Order | None:
    return _orders(db).find_one_and_update(
        {"_id": order_id, "status": "new"},
        {"$set": {"status": "priced", "total": total, "priced_at": dt.datetime.now(dt.UTC)}},
        return_document=ReturnDocument.AFTER,
    )


def revenue_by_currency(db: Database[Order]) -> dict[str, float]:
    pipeline: list[dict[str, Any]] = [
        {"$match": {"status": "priced"}},
        {"$group": {"_id": "$currency", "total": {"$sum": "$total"}}},
    ]
    return {row["_id"]: round(row["total"], 2) for row in _orders(db).aggregate(pipeline)}

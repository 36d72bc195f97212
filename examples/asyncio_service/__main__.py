"""Run the order-pricing service: ``python -m examples.asyncio_service [--orders N] [--check]``.

Seeds a catalogue and N orders with the legacy repository (plain start-up
code), prices them with asyncio workers under ``asyncio.run``, prints the
revenue per currency. Without ``--mongodb-uri``/``MONGODB_URI`` it uses an
embedded in-memory nx-27017 (:mod:`examples.messages.embedded`). ``--check``
also verifies every order was priced correctly and exits 1 if not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

import motorpatch
from examples import _cli
from examples.asyncio_service import repository
from examples.asyncio_service.service import RATES, run_service

__all__ = ["main"]

CATALOGUE = {"apple": 0.5, "pear": 0.75, "melon": 2.0}


def seed(db: Database[Any], n: int) -> list[str]:
    """Plain start-up code: the catalogue and ``n`` new orders. Returns the order ids."""
    db["catalogue"].insert_many([{"_id": k, "price": v} for k, v in CATALOGUE.items()])
    skus, currencies = sorted(CATALOGUE), sorted(RATES)
    ids = []
    for i in range(n):
        order_id = f"order-{i:05d}"
        repository.add_order(db, order_id, skus[i % 3], 1 + i % 4, currencies[i % 3])
        ids.append(order_id)
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    cli = _cli.parser(
        "python -m examples.asyncio_service",
        "asyncio workers pricing orders with a legacy synchronous PyMongo module.",
        check="verify every order, exit 1 if wrong",
    )
    cli.add_argument("--orders", type=int, default=200, help="orders to price [200]")
    cli.add_argument("--workers", type=int, default=20, help="concurrent workers [20]")
    args = cli.parse_args(argv)
    motorpatch.install()  # first, before any PyMongo client exists
    return _cli.run_with_mongodb(
        args.mongodb_uri, lambda uri, cleanup: _run(args, uri, cleanup), errors=(PyMongoError,)
    )


def _run(args: argparse.Namespace, uri: str, cleanup: contextlib.ExitStack[bool | None]) -> int:
    """Seed, price with the asyncio workers, print the revenue; with --check, verify."""
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    cleanup.callback(client.close)
    db = client[f"motorpatch_orders_{uuid.uuid4().hex[:8]}"]
    cleanup.callback(client.drop_database, db.name)
    repository.ensure_indexes(db)  # plain start-up code, before the loop
    ids = seed(db, args.orders)
    start = time.perf_counter()
    result = asyncio.run(run_service(db, ids, args.workers))
    elapsed = time.perf_counter() - start
    revenue = repository.revenue_by_currency(db)  # plain code again, after the loop
    print(
        f"Priced {len(result.priced)} orders with {args.workers} workers in "
        f"{elapsed * 1000:.0f} ms; {len(result.failed)} failed.",
        flush=True,
    )
    print("Revenue:", ", ".join(f"{v:.2f} {k}" for k, v in sorted(revenue.items())))
    if args.check:
        for order_id in ids:
            order = result.priced.get(order_id) or {}
            want = (
                round(CATALOGUE[order.get("sku", "")] * order["qty"] * RATES[order["currency"]], 2)
                if order
                else None
            )
            if order.get("status") != "priced" or order.get("total") != want:
                print(f"check failed: {order_id}: {order}", file=sys.stderr)
                return 1
        print("check ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

import motorpatch
from examples.asyncio_service import repository
from examples.asyncio_service.service import RATES, run_service
from examples.messages.__main__ import mask_uri
from examples.messages.embedded import EmbeddedMongo, EmbeddedMongoError

__all__ = ["main"]

CATALOGUE = {"apple": 0.5, "pear": 0.75, "melon": 2.0}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.asyncio_service",
        description="asyncio workers pricing orders with a legacy synchronous PyMongo module.",
    )
    parser.add_argument("--orders", type=int, default=200, help="orders to price [200]")
    parser.add_argument("--workers", type=int, default=20, help="concurrent workers [20]")
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("MONGODB_URI") or None,
        help="MongoDB connection string [$MONGODB_URI; when unset, an embedded nx-27017]",
    )
    parser.add_argument("--check", action="store_true", help="verify every order, exit 1 if wrong")
    return parser.parse_args(argv)


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
    args = _parse_args(argv)
    motorpatch.install()  # first, before any PyMongo client exists
    uri = args.mongodb_uri
    try:
        with contextlib.ExitStack() as cleanup:
            if uri is None:
                embedded = cleanup.enter_context(EmbeddedMongo())
                uri = embedded.uri
                print(f"Started embedded nx-27017 (pid {embedded.pid}) at {uri}", flush=True)
            client: MongoClient[dict[str, object]] = MongoClient(
                uri, serverSelectionTimeoutMS=10_000
            )
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
                        round(
                            CATALOGUE[order.get("sku", "")]
                            * order["qty"]
                            * RATES[order["currency"]],
                            2,
                        )
                        if order
                        else None
                    )
                    if order.get("status") != "priced" or order.get("total") != want:
                        print(f"check failed: {order_id}: {order}", file=sys.stderr)
                        return 1
                print("check ok", flush=True)
    except EmbeddedMongoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PyMongoError as exc:
        print(f"error: cannot use MongoDB at {mask_uri(uri or '')}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

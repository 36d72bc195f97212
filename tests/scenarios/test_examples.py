"""The MongoEngine blog API and the asyncio service examples, against the test server.

The blog runs in-process on a Tornado loop and is driven over real HTTP on 127.0.0.1:
every handler, its error statuses, and 20 concurrent requests against a server whose
replies are delayed. The service prices orders on an asyncio loop, directly and delayed.
Both also run as ``python -m examples.X --check`` (embedded nx-27017, one round, exit).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pymongo
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from examples.asyncio_service import repository
from examples.asyncio_service.__main__ import CATALOGUE, seed
from examples.asyncio_service.service import RATES, run_service
from examples.mongoengine_app.app import disconnect, ensure_indexes, make_app
from tests.support.loops import LagTicker, run_on
from tests.support.web import tornado_served

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# A PyMongo call that would block the loop fails its request, and so the test.
pytestmark = [
    pytest.mark.usefixtures("installed"),
    pytest.mark.filterwarnings("error::motorpatch.BlockingCallWarning"),
]


class Api:
    """JSON over HTTP to a running app; never raises on 4xx/5xx."""

    def __init__(self, base: str, http: AsyncHTTPClient) -> None:
        self.base, self.http = base, http

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None and method == "GET" else json.dumps(body or {})
        if method == "DELETE":
            payload = None
        response: HTTPResponse = await self.http.fetch(
            self.base + path, method=method, body=payload, raise_error=False
        )
        return response.code, json.loads(response.body) if response.body else None


@pytest.fixture
def run_blog(server_uri: str) -> Iterator[Callable[..., Any]]:
    """``run_blog(test, uri=None, client_options=None)``: serve the blog, run ``test(api)``."""
    databases: list[str] = []

    def run(
        test: Callable[[Api], Awaitable[T]],
        uri: str | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> T:
        database = f"blog_{uuid.uuid4().hex[:12]}"
        databases.append(database)
        app = make_app(uri or server_uri, database, client_options)
        ensure_indexes()  # start-up code, plain, before the loop (as __main__ does)

        async def main() -> T:
            async with tornado_served(app) as (base, http):
                return await test(Api(base, http))

        return run_on("tornado", main)

    yield run
    disconnect()
    with pymongo.MongoClient(server_uri) as client:
        for database in databases:
            client.drop_database(database)


def test_blog_every_handler(run_blog: Callable[..., Any]) -> None:
    async def test(api: Api) -> dict[str, Any]:
        got: dict[str, Any] = {}
        _, ann = got["ann"] = await api(
            "POST", "/authors", {"name": "ann", "city": "Lyon", "country": "FR"}
        )
        got["dup"] = await api("POST", "/authors", {"name": "ann"})
        _, bob = await api("POST", "/authors", {"name": "bob"})
        _, p1 = got["p1"] = await api(
            "POST", "/posts", {"author_id": ann["id"], "title": "one", "tags": ["news", "tech"]}
        )
        _, p2 = await api(
            "POST", "/posts", {"author_id": bob["id"], "title": "two", "tags": ["news"]}
        )
        got["bad_post"] = await api(
            "POST", "/posts", {"author_id": ann["id"], "title": "x", "tags": [1]}
        )
        got["no_title"] = await api("POST", "/posts", {"author_id": ann["id"]})
        got["no_author"] = await api("POST", "/posts", {"author_id": "nobody", "title": "x"})
        got["not_json"] = await api("POST", "/authors", "not an object")
        for _ in range(3):
            got["like"] = await api("POST", f"/posts/{p2['id']}/like")
        got["like_missing"] = await api("POST", f"/posts/{'f' * 24}/like")
        got["patch"] = await api("PATCH", f"/posts/{p1['id']}", {"title": "one!", "tags": ["tech"]})
        got["patch_empty"] = await api("PATCH", f"/posts/{p1['id']}", {"likes": 99})
        got["get"] = await api("GET", f"/posts/{p1['id']}")
        got["author"] = await api("GET", f"/authors/{ann['id']}")
        got["news"] = await api("GET", "/posts?tag=news")
        got["by_bob"] = await api("GET", f"/posts?author={bob['id']}")
        got["all"] = await api("GET", "/posts")
        got["tags"] = await api("GET", "/tags")
        got["delete"] = await api("DELETE", f"/posts/{p2['id']}")
        got["delete_again"] = await api("DELETE", f"/posts/{p2['id']}")
        got["bad_id"] = await api("GET", "/posts/nope")
        got["after_delete"] = await api("GET", "/posts")
        return got

    got = run_blog(test)
    code, ann = got["ann"]
    assert code == 201 and ann["address"] == {"city": "Lyon", "country": "FR"}
    assert got["dup"][0] == 409
    assert got["p1"][0] == 201 and got["p1"][1]["author"] == {"id": ann["id"], "name": "ann"}
    for key in ("bad_post", "no_title", "not_json", "patch_empty"):
        assert got[key][0] == 400 and got[key][1]["error"], key
    for key in ("no_author", "like_missing", "delete_again", "bad_id"):
        assert got[key][0] == 404, key
    assert got["like"][1]["likes"] == 3
    assert got["patch"][0] == 200 and got["patch"][1]["title"] == "one!"
    assert got["get"][1]["title"] == "one!" and got["get"][1]["tags"] == ["tech"]
    assert got["author"][1]["posts"] == ["one!"]
    assert [p["title"] for p in got["news"][1]["posts"]] == ["two"]
    assert [p["author"]["name"] for p in got["by_bob"][1]["posts"]] == ["bob"]
    assert [p["title"] for p in got["all"][1]["posts"]] == ["two", "one!"]  # newest first
    assert got["tags"][1] == {
        "tags": [{"tag": "news", "posts": 1, "likes": 3}, {"tag": "tech", "posts": 1, "likes": 0}]
    }
    assert got["delete"][0] == 204
    assert [p["title"] for p in got["after_delete"][1]["posts"]] == ["one!"]


def test_blog_concurrent_requests_overlap_on_a_delayed_server(run_blog, proxy) -> None:
    """20 requests, each needing 2+ round trips delayed 100 ms, take a few delays, not 20."""
    delay, n = 0.1, 20

    async def test(api: Api) -> tuple[float, LagTicker]:
        _, author = await api("POST", "/authors", {"name": "ann"})
        for i in range(3):
            await api(
                "POST", "/posts", {"author_id": author["id"], "title": f"t{i}", "tags": ["x"]}
            )

        async def get_all() -> None:
            replies = await asyncio.gather(*[api("GET", "/posts?tag=x") for _ in range(n)])
            assert all(code == 200 and len(body["posts"]) == 3 for code, body in replies)

        await get_all()  # warm-up: a connection per concurrent request
        proxy.delay = delay
        with LagTicker() as ticker:
            start = time.perf_counter()
            await get_all()
            elapsed = time.perf_counter() - start
        return elapsed, ticker

    elapsed, ticker = run_blog(test, proxy.uri, {"maxConnecting": 20})
    serial = n * 2 * delay  # the posts query, then their authors' (select_related)
    print(
        f"blog: {n} GETs x 2 round trips x {delay * 1000:.0f} ms in {elapsed * 1000:.0f} ms "
        f"(serial {serial * 1000:.0f} ms), max loop lag {ticker.max * 1000:.1f} ms"
    )
    assert elapsed < serial / 4, f"{n} concurrent requests took {elapsed:.2f}s: serialised"
    # Handlers that blocked would make most ticks wait a whole reply; the max also includes
    # MongoEngine's and Tornado's own CPU bursts when 20 replies land at once.
    assert ticker.percentile(50) < delay / 2, "the loop stalled: a handler blocked it"


@pytest.fixture
def orders_db(make_client: Callable[..., Any]) -> Iterator[Any]:
    client = make_client()
    db = client[f"orders_{uuid.uuid4().hex[:12]}"]
    yield db
    client.drop_database(db.name)


def _expected_total(order: dict[str, Any]) -> float:
    return round(CATALOGUE[order["sku"]] * order["qty"] * RATES[order["currency"]], 2)


def test_service_prices_every_order_and_reports_failures(orders_db) -> None:
    repository.ensure_indexes(orders_db)
    ids = seed(orders_db, 30)  # plain start-up code, then the loop, then plain again

    async def main() -> Any:
        return await run_service(orders_db, [*ids, "no-such-order"], workers=5)

    result = run_on("asyncio", main)
    assert result.failed == {"no-such-order": "LookupError: no order 'no-such-order'"}
    assert sorted(result.priced) == ids
    for order_id in ids:
        stored = repository.get_order(orders_db, order_id)
        assert stored is not None and stored == result.priced[order_id]
        assert stored["status"] == "priced" and stored["total"] == _expected_total(stored)
    revenue = repository.revenue_by_currency(orders_db)
    assert set(revenue) == set(RATES)
    assert sum(revenue.values()) == pytest.approx(
        sum(_expected_total(o) for o in result.priced.values())
    )


def test_service_workers_overlap_on_a_delayed_server(orders_db, make_client, proxy) -> None:
    """20 orders x 4 round trips delayed 50 ms, 20 workers: about 4 delays, not 80."""
    repository.ensure_indexes(orders_db)
    ids = seed(orders_db, 20)
    proxied = make_client(proxy.uri, maxConnecting=20)[orders_db.name]
    delay = 0.05

    async def main() -> tuple[float, Any]:
        proxy.delay = delay
        start = time.perf_counter()
        result = await run_service(proxied, ids, workers=20, rate_latency=delay)
        return time.perf_counter() - start, result

    elapsed, result = run_on("asyncio", main)
    serial = len(ids) * 4 * delay  # get_order, unit_price, mark_priced, plus the rate wait
    print(f"service: {len(ids)} orders in {elapsed * 1000:.0f} ms (serial {serial * 1000:.0f} ms)")
    assert not result.failed and sorted(result.priced) == ids
    assert elapsed < serial / 4, f"the workers did not overlap: {elapsed:.2f}s"


@pytest.mark.parametrize(
    "example", ["mongoengine_app", "asyncio_service", "fastapi_board", "aiohttp_board"]
)
def test_cli_check_runs_with_the_embedded_server(example: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}

    def run_example(flag: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", f"examples.{example}", flag],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    help_run = run_example("--help", 60)
    assert help_run.returncode == 0 and "--check" in help_run.stdout
    run = run_example("--check", 120)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "Started embedded nx-27017" in output and "check ok" in output

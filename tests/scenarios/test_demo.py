"""The message board demo (examples/messages) over real HTTP on 127.0.0.1, against a real server:
in-process on the Tornado loop, and as ``python -m examples.messages`` with its embedded nx-27017.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from examples._cli import mask_uri
from examples.messages.app import MAX_TEXT, ensure_indexes, make_app, messages_collection
from tests.support.loops import LagTicker, run_on
from tests.support.servers import free_port
from tests.support.web import tornado_served

ROOT = Path(__file__).resolve().parents[2]

# A PyMongo call that would block the loop fails its request, and so the test.
pytestmark = [pytest.mark.usefixtures("installed"),
              pytest.mark.filterwarnings("error::motorpatch.BlockingCallWarning")]
T = TypeVar("T")


class Board:
    """HTTP access to a running board: ``await board.fetch(path, ...)`` never raises on 4xx."""

    def __init__(self, base: str, http: AsyncHTTPClient) -> None:
        self.base, self.http = base, http

    async def fetch(self, path: str, method: str = "GET", **kw: Any) -> HTTPResponse:
        return await self.http.fetch(self.base + path, method=method, raise_error=False,
                                     follow_redirects=False, **kw)

    async def post_form(self, author: str, text: str) -> HTTPResponse:
        body = urlencode({"author": author, "text": text})  # application/x-www-form-urlencoded
        return await self.fetch("/", "POST", body=body)

    async def page(self) -> str:
        response = await self.fetch("/")
        assert response.code == 200
        return response.body.decode()


RunBoard = Callable[..., Any]


@pytest.fixture
def run_board(make_client: Callable[..., Any]) -> Iterator[RunBoard]:
    """``run_board(test, uri, client_kw, **app_kw)``: serve a fresh board, run ``test(board)``."""
    collections = []

    def run(test: Callable[[Board], Awaitable[T]], uri: str | None = None,
            client_kw: dict[str, Any] | None = None, start_up: bool = True, **kw: Any) -> T:
        client = make_client(uri, **(client_kw or {}))
        name = f"demo_{uuid.uuid4().hex[:12]}"
        collections.append(name)
        if start_up:  # as __main__ does: plain, blocking PyMongo before the loop runs
            ensure_indexes(messages_collection(client, "motorpatch_test", name))

        async def main() -> T:
            app = make_app(client, database="motorpatch_test", collection=name, **kw)
            async with tornado_served(app) as (base, http):
                return await test(Board(base, http))

        return run_on("tornado", main)

    yield run
    db = make_client()["motorpatch_test"]
    for name in collections:
        db.drop_collection(name)


def test_page_shows_the_compose_form(run_board: RunBoard) -> None:
    html = run_board(Board.page)
    assert re.search(r'<form method="post" action="/">', html)
    assert 'name="author"' in html and 'name="text"' in html
    assert "No messages yet" in html


def test_form_post_redirects_and_lists_newest_first(run_board: RunBoard) -> None:
    async def test(board: Board) -> str:
        for text in ("first message", "second message"):
            response = await board.post_form("ann", text)
            assert (response.code, response.headers["Location"]) == (303, "/")
        return await board.page()

    html = run_board(test)
    assert 0 < html.index("second message") < html.index("first message")
    assert "<strong>ann</strong>" in html


@pytest.mark.parametrize(
    ("text", "error"),
    [("   ", "the text is empty"), ("x" * (MAX_TEXT + 1), f"at most {MAX_TEXT} characters")],
    ids=["empty", "too-long"],
)
def test_invalid_form_post_is_a_400_page_with_the_error(run_board: RunBoard, text: str,
                                                        error: str) -> None:
    async def test(board: Board) -> tuple[HTTPResponse, HTTPResponse]:
        return await board.post_form("ann", text), await board.fetch("/api/messages")

    response, listing = run_board(test)
    html = response.body.decode()
    assert response.code == 400 and error in html and 'class="error"' in html and "<form" in html
    assert json.loads(listing.body) == {"messages": []}


def test_user_content_is_html_escaped(run_board: RunBoard) -> None:
    async def test(board: Board) -> str:
        await board.post_form('<img src=x onerror="alert(1)">', "<script>alert(1)</script>")
        return await board.page()

    html = run_board(test)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_json_api_round_trip_and_health(run_board: RunBoard) -> None:
    async def test(board: Board) -> list[HTTPResponse]:
        post = await board.fetch("/api/messages", "POST", body=json.dumps({"text": " hi "}))
        invalid = [
            await board.fetch("/api/messages", "POST", body=body)
            for body in ("not json", "[1]", json.dumps({"text": ""}), json.dumps({"text": 5}))
        ]
        return [post, await board.fetch("/api/messages"), await board.fetch("/healthz"), *invalid]

    post, listing, health, *invalid = run_board(test)
    created = json.loads(post.body)
    assert post.code == 201 and created["author"] == "anonymous" and created["text"] == "hi"
    assert created["created_at"].endswith("Z")
    assert json.loads(listing.body) == {"messages": [created]}
    assert (health.code, json.loads(health.body)) == (200, {"status": "ok"})
    for response in invalid:
        assert response.code == 400 and json.loads(response.body)["error"]


def test_stats_page_shows_requests_parked_on_the_database(run_board: RunBoard, proxy: Any) -> None:
    """While GETs wait on a hung server, /stats reports them in flight and parked on reads."""

    async def test(board: Board) -> tuple[dict[str, Any], dict[str, Any]]:
        await board.fetch("/api/messages")  # warm: a connection and server selection done
        sent = proxy.requests
        proxy.hang()
        pending = [asyncio.ensure_future(board.fetch("/api/messages")) for _ in range(3)]
        await asyncio.get_running_loop().run_in_executor(None, proxy.wait_requests, sent + 3)
        during = json.loads((await board.fetch("/stats")).body)
        proxy.resume()
        await asyncio.gather(*pending)
        return during, json.loads((await board.fetch("/stats")).body)

    during, after = run_board(test, proxy.uri, {"maxConnecting": 3})
    assert during["in_flight"] == 3 and during["parked"]["socket read"] == 3
    assert after["in_flight"] == 0 and after["parked"]["socket read"] == 0


def test_health_is_503_when_the_database_is_unreachable(run_board: RunBoard) -> None:
    async def test(board: Board) -> HTTPResponse:
        return await board.fetch("/healthz")

    uri = f"mongodb://127.0.0.1:{free_port()}"
    response = run_board(test, uri, start_up=False, health_timeout=0.3)
    assert response.code == 503 and json.loads(response.body)["status"] == "unavailable"


def test_concurrent_requests_do_not_block_the_loop(run_board: RunBoard, proxy: Any) -> None:
    """20 GETs, each waiting 100 ms for its DB reply, take about one delay, not 20."""
    delay, n = 0.1, 20

    async def test(board: Board) -> tuple[float, LagTicker]:
        for i in range(3):
            await board.fetch("/api/messages", "POST", body=json.dumps({"text": f"m{i}"}))

        async def get_all() -> None:
            responses = await asyncio.gather(*[board.fetch("/api/messages") for _ in range(n)])
            assert all(len(json.loads(r.body)["messages"]) == 3 for r in responses)

        proxy.delay = delay
        await get_all()  # warm-up: the pool opens a connection per concurrent request
        with LagTicker() as ticker:
            start = time.perf_counter()
            await get_all()
            elapsed = time.perf_counter() - start
        return elapsed, ticker

    # maxConnecting: let the warm-up open its connections in parallel, not two at a time.
    elapsed, ticker = run_board(test, proxy.uri, {"maxConnecting": n})
    print(f"demo: {n} GETs x {delay * 1000:.0f} ms DB delay in {elapsed * 1000:.0f} ms, "
          f"max loop lag {ticker.max * 1000:.1f} ms")
    assert elapsed < 5 * delay, f"{n} concurrent requests took {elapsed:.2f}s: they were serialised"
    assert ticker.max < delay, "the loop stalled for a whole DB reply: a handler blocked it"


def test_mask_uri_hides_passwords_and_secret_options() -> None:
    assert mask_uri("mongodb://127.0.0.1:27017/db") == "mongodb://127.0.0.1:27017/db"
    assert mask_uri("mongodb://u:p%40ss@h1,h2:2/db?replicaSet=r&tlsCertificateKeyFilePassword=k") \
        == "mongodb://u:***@h1,h2:2/db?replicaSet=r&tlsCertificateKeyFilePassword=***"
    assert mask_uri("mongodb+srv://u:half/pw@c.example.net/") == "mongodb+srv://u:***@c.example.net/"


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")  # a zombie is dead, only not yet reaped
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_with_embedded_server_and_stops_it(sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.messages", "--port", "0"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    output: list[str] = []

    def wait_for(pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, "".join(output))):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in:\n{''.join(output)}") from None
            assert line is not None, f"the demo exited early:\n{''.join(output)}"
            output.append(line)
        return match

    try:
        nx = wait_for(r"embedded nx-27017 \(pid (\d+)\) at mongodb://127\.0\.0\.1:(\d+)")
        url = wait_for(r"Message board running at (http://127\.0\.0\.1:\d+/) ").group(1)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP_PROXY
        request = urllib.request.Request(url + "api/messages", json.dumps({"text": "cli"}).encode())
        with opener.open(request, timeout=10) as response:
            assert response.status == 201
        with opener.open(url, timeout=10) as response:
            assert "<strong>anonymous</strong>" in response.read().decode()
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0, "".join(output)
        wait_for(r"Stopped\.")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _gone(int(nx.group(1))), "the embedded nx-27017 outlived the demo"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(nx.group(2))), timeout=5).close()

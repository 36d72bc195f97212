"""Web apps as real servers for the framework tests, and a load client to drive them.

- ``AppProcess``: a server command (uvicorn, gunicorn...) as a subprocess on a
  free loopback port, in its own session; waits until it listens, and stops
  it (and any workers it forked) afterwards. Its output goes to a file that
  failure messages quote.
- ``burst``: ``n`` concurrent GETs (aiohttp's client, one connection each)
  that return the JSON bodies; aiohttp's client keeps up with hundreds of
  concurrent requests where httpx's ``AsyncClient`` on the same loop fell
  behind.
- ``assert_overlap``: every request of a burst was in flight at once: the
  last one started before the first one finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.proxy import FaultProxy
from tests.support.servers import free_port, wait_listening

__all__ = ["AppProcess", "assert_green_burst", "assert_overlap", "burst", "serve", "slow_proxy"]

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ROOT / "tests" / "frameworks"


class AppProcess:
    """``argv`` (with ``{port}`` filled in) run from tests/frameworks until ``stop()``."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="motorpatch-app-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [a.format(port=self.port) for a in argv],
            cwd=FRAMEWORKS,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    [str(FRAMEWORKS), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
        )
        try:
            wait_listening(self.port, timeout=timeout, proc=self.proc)
        except BaseException as exc:
            self.stop()
            raise AssertionError(f"{argv[:4]} did not start: {exc}\n{self.output()}") from None

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def python(*args: str) -> list[str]:
    """``python args...`` with this interpreter."""
    return [sys.executable, *args]


async def _burst(urls: Sequence[str], timeout: float) -> list[Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:

        async def one(url: str) -> Any:
            async with session.get(url) as reply:
                text = await reply.text()
                assert reply.status == 200, f"{url}: HTTP {reply.status}: {text[:2000]}"
                return await reply.json(content_type=None)

        return list(await asyncio.gather(*(one(u) for u in urls)))


def burst(url: str | Sequence[str], n: int = 1, timeout: float = 30.0) -> list[Any]:
    """GET ``url`` ``n`` times at once (or each of a list of URLs); the JSON bodies."""
    urls = [url] * n if isinstance(url, str) else list(url)
    return asyncio.run(_burst(urls, timeout))


def assert_overlap(bodies: Sequence[Mapping[str, Any]], key: str = "") -> None:
    """All requests were in flight together: the last start precedes the first finish.

    ``started``/``finished`` are ``time.monotonic()`` in the serving process(es),
    so with several workers compare per worker (``key``: e.g. ``"pid"``).
    """
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for body in bodies:
        groups.setdefault(body[key] if key else None, []).append(body)
    for group, members in groups.items():
        last_start = max(b["started"] for b in members)
        first_end = min(b["finished"] for b in members)
        assert last_start < first_end, (
            f"{len(members)} requests{f' of {key}={group}' if key else ''} ran one after "
            f"another: last start {last_start:.3f} >= first finish {first_end:.3f}"
        )


@contextlib.contextmanager
def slow_proxy(server_address: tuple[str, int], delay: float) -> Iterator[FaultProxy]:
    """A fault proxy in front of the test server that delays every reply by ``delay`` s."""
    proxy = FaultProxy(server_address[1], server_address[0]).start()
    proxy.delay = delay
    try:
        yield proxy
    finally:
        proxy.stop()


@contextlib.contextmanager
def serve(target: str, mongodb_uri: str, *options: str) -> Iterator[AppProcess]:
    """``uvicorn target`` (an app under tests/frameworks) on a free port, MONGODB_URI set."""
    app = AppProcess(
        python("-m", "uvicorn", target, "--host", "127.0.0.1", "--port", "{port}",
               "--no-access-log", *options),
        env={"MONGODB_URI": mongodb_uri},
    )  # fmt: skip
    try:
        yield app
    finally:
        app.stop()


def assert_green_burst(app: AppProcess, n: int, delay: float, path: str = "/find") -> None:
    """``n`` concurrent requests to ``path`` (a probe.find handler, each query ``delay`` s
    late): all ran as green code on the loop thread, overlapped, and the loop's worst
    lag meanwhile (the app's ``/lag``) stayed below one query's delay."""
    burst(f"{app.url}/lag")  # reset the worst lag seen so far (start-up)
    bodies = burst(f"{app.url}{path}", n)
    (lag,) = burst(f"{app.url}/lag")
    off = [b for b in bodies if not (b["main_thread"] and b["green"])]
    assert not off, f"{len(off)} of {n} handlers did not run green on the loop thread: {off[0]}"
    assert_overlap(bodies)
    assert lag["worst_lag"] < delay, f"the loop was blocked for {lag['worst_lag']:.3f}s"

"""Several worker processes: ``uvicorn --workers 2`` and gunicorn with uvicorn workers.

Each worker makes its own ``MongoClient`` in the app's lifespan (the client's
creating pid is the worker's own). Bursts of concurrent requests go to the
app until both workers have answered; in each worker the green handlers ran
on its loop thread and overlapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.apps import AppProcess, assert_overlap, burst, python, slow_proxy

DELAY = 0.2
BURST = 16


@pytest.fixture(scope="module")
def slow(server_address: tuple[str, int]) -> Iterator[Any]:
    with slow_proxy(server_address, DELAY) as proxy:
        yield proxy


def _both_workers_serve_green(app: AppProcess) -> None:
    seen: dict[int, list[dict[str, Any]]] = {}
    for _ in range(10):  # the kernel spreads connections over the workers' accept()s
        bodies = burst(f"{app.url}/find", BURST)
        for body in bodies:
            assert body["green"] and body["main_thread"], body
            assert body["client_pid"] == body["pid"], "a client crossed a fork"
        assert_overlap(bodies, key="pid")
        for body in bodies:
            seen.setdefault(body["pid"], []).append(body)
        if len(seen) == 2:
            return
    raise AssertionError(f"only workers {sorted(seen)} answered {10 * BURST} requests")


def _serve_and_check(slow: Any, *argv: str) -> None:
    """Start ``python *argv`` on the slow proxy, check both workers serve green, stop it."""
    app = AppProcess(python(*argv), env={"MONGODB_URI": slow.uri})
    try:
        _both_workers_serve_green(app)
    finally:
        app.stop()


def test_uvicorn_workers(slow: Any) -> None:
    _serve_and_check(slow, "-m", "uvicorn", "apps.workers_app:app", "--host", "127.0.0.1",
                     "--port", "{port}", "--workers", "2", "--no-access-log")  # fmt: skip


def test_gunicorn_with_uvicorn_workers(slow: Any) -> None:
    _serve_and_check(slow, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
                     "-b", "127.0.0.1:{port}", "apps.workers_app:app")  # fmt: skip

"""Litestar under uvicorn: ``@get`` over ``@motorpatch.green`` handlers run green.

Ten concurrent requests, each query delayed ``DELAY`` s by a fault proxy: every
handler runs as green code on the loop thread (not in a worker thread,
where Litestar sends sync handlers; on Python 3.11 it takes the handler for a sync one,
calls it on the loop and awaits what it returns), they
overlap, and the loop's worst lag meanwhile stays below one query's delay.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.apps import AppProcess, assert_green_burst, serve, slow_proxy

pytest.importorskip("litestar")

DELAY = 0.5  # a blocked loop shows as lag >= DELAY; framework CPU on a busy machine stays below


@pytest.fixture(scope="module")
def app(server_address: tuple[str, int]) -> Iterator[AppProcess]:
    target = "apps.litestar_app:app"
    with slow_proxy(server_address, DELAY) as proxy, serve(target, proxy.uri) as app:
        yield app


def test_green_handlers_overlap_on_the_loop_thread(app: AppProcess) -> None:
    assert_green_burst(app, 10, DELAY)

"""Quart under uvicorn: ``@app.get`` over ``@motorpatch.green`` handlers run green.

Ten concurrent requests, each query delayed ``DELAY`` s by a fault proxy: every
handler runs as green code on the loop thread (not in Quart's thread pool,
where it sends handlers it does not see as coroutine functions), they
overlap, and the loop's worst lag meanwhile stays below one query's delay.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.apps import AppProcess, assert_green_burst, serve, slow_proxy

pytest.importorskip("quart")

DELAY = 0.5  # a blocked loop shows as lag >= DELAY; framework CPU on a busy machine stays below


@pytest.fixture(scope="module")
def app(server_address: tuple[str, int]) -> Iterator[AppProcess]:
    target = "apps.quart_app:app"
    with slow_proxy(server_address, DELAY) as proxy, serve(target, proxy.uri) as app:
        yield app


def test_green_handlers_overlap_on_the_loop_thread(app: AppProcess) -> None:
    assert_green_burst(app, 10, DELAY)

"""Thread joins reached from green code (``PeriodicExecutor.join``) park instead of blocking."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import monitoring

import motorpatch
from tests.support.loops import LagTicker, run_on

pytestmark = pytest.mark.usefixtures("installed")


class _TopologyListener(monitoring.TopologyListener):
    def opened(self, event: Any) -> None:
        pass

    def description_changed(self, event: Any) -> None:
        pass

    def closed(self, event: Any) -> None:
        pass


def test_closing_clients_with_listeners_does_not_stall_the_loop(loop_kind, make_client):
    # With an SDAM listener, close() joins the events thread: up to 1 s each, unpatched.
    clients = [make_client(event_listeners=[_TopologyListener()]) for _ in range(5)]
    for client in clients:
        client.admin.command("ping")

    @motorpatch.green
    def close(client: Any) -> None:
        client.close()

    async def main() -> LagTicker:
        with LagTicker() as ticker:
            await asyncio.gather(*[close(c) for c in clients])
        return ticker

    ticker = run_on(loop_kind, main)
    assert ticker.max < 0.05, f"client.close() stalled the loop for {ticker.max:.3f}s"

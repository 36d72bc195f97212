"""The parity harness itself can fail: a mode-dependent result, or green code that is not."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import motorpatch
from motorpatch.bridge import green_loop
from tests.support.loops import run_on


def _scenario(coll: Any) -> Any:
    coll.insert_one({"_id": 1})
    return coll.find_one()


def test_a_result_that_depends_on_the_mode_fails_the_check(parity):
    def scenario(coll: Any) -> Any:
        return {"doc": _scenario(coll), "green": green_loop() is not None}

    with pytest.raises(AssertionError, match="green code differs"):
        parity.check(scenario)
    assert parity.modes_run == ["plain", "green"]


def test_the_same_result_passes_and_both_modes_ran(parity):
    assert parity.check(_scenario).value == {"_id": 1}
    assert parity.modes_run == ["plain", "green"]


def test_a_green_run_without_green_sockets_fails(parity):
    """Uninstalled, @green code runs PyMongo's plain sockets: the harness must notice."""
    motorpatch.uninstall()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", motorpatch.BlockingCallWarning)
        with pytest.raises(AssertionError, match=r"loop never ran|pooled sockets of the green run"):
            parity.run("green", _scenario)


def test_a_plain_run_on_green_sockets_fails(parity):
    """A "plain" run whose client already holds GreenSockets is not plain: flagged."""

    @contextmanager
    def env_with_green_pool(mode: str) -> Iterator[Any]:
        with parity.collection_env(mode) as env:
            find = motorpatch.green(env.arg.find_one)

            async def warm() -> Any:
                return await find()

            run_on("asyncio", warm)  # the pooled connection is now a GreenSocket
            yield env

    with pytest.raises(AssertionError, match="left a GreenSocket"):
        parity.run("plain", _scenario, env_with_green_pool)

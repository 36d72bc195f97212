"""The one gate of green-only patches: who takes the green branch, who is reported, who gets self.

The rule itself is checked on a function of a throwaway module (the gate is
generic); the two PyMongo consequences on real servers: a plain
server-selection wait on a loop's thread is reported on every PyMongo
release (4.9-4.10 wait on the topology's condition, 4.11+ in ``_cond_wait``),
and a tracer that calls ``Pool.__dict__["_get_conn"](pool, ...)`` (wrapt then
passes ``instance=None`` with ``self`` in ``args``) works in green code.
"""

from __future__ import annotations

import asyncio
import types
import warnings
from typing import Any

import pymongo
import pytest
import wrapt
from pymongo.errors import ServerSelectionTimeoutError
from pymongo.synchronous.pool import Pool

import motorpatch
from motorpatch.patches._gates import green_only
from tests.support.loops import run_on
from tests.support.servers import free_port


class _Target:
    def method(self, x: int) -> tuple[str, int]:
        return ("original", x)


def _throwaway() -> types.ModuleType:
    module = types.ModuleType("motorpatch_gate_target")

    def f(x: int) -> tuple[str, int]:
        return ("original", x)

    module.f = f  # type: ignore[attr-defined]
    module.Target = _Target  # type: ignore[attr-defined]
    return module


def _branch(loop: Any, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return ("green", loop is asyncio.get_running_loop(), instance, args)


def _blocking_warnings(fn: Any) -> tuple[Any, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [w for w in caught if issubclass(w.category, motorpatch.BlockingCallWarning)]


def test_the_gate_rule_installed_green_plain_and_after_uninstall() -> None:
    module = _throwaway()
    wrapt.wrap_function_wrapper(module, "f", green_only(_branch, detect_blocking=True))

    @motorpatch.green
    def in_green() -> Any:
        return module.f(1)

    async def plain_on_the_loop() -> Any:
        return _blocking_warnings(lambda: module.f(2))

    motorpatch.install()
    try:
        assert run_on("asyncio", in_green) == ("green", True, None, (1,))
        result, reported = run_on("asyncio", plain_on_the_loop)
        assert result == ("original", 2) and len(reported) == 1
        assert _blocking_warnings(lambda: module.f(3)) == (("original", 3), [])  # no loop here
    finally:
        motorpatch.uninstall()
    # Uninstalled (a wrapper another library still reaches): the original, nothing reported
    # (but for the one warning that green code runs while motorpatch is not installed).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", motorpatch.BlockingCallWarning)
        assert run_on("asyncio", in_green) == ("original", 1)
    assert run_on("asyncio", plain_on_the_loop) == (("original", 2), [])


def test_the_gate_binds_self_when_wrapt_passes_instance_none() -> None:
    module = _throwaway()
    wrapt.wrap_function_wrapper(module, "Target.method", green_only(_branch, method=True))
    raw = vars(module.Target)["method"]
    target = module.Target()

    @motorpatch.green
    def calls() -> list[Any]:
        return [target.method(1), raw(target, 2)]

    motorpatch.install()
    try:
        bound, through_dict = run_on("asyncio", calls)
    finally:
        motorpatch.uninstall()
    assert bound == ("green", True, target, (1,))
    assert through_dict == ("green", True, target, (2,))  # self taken out of args


def test_a_tracer_calling_get_conn_through_the_class_dict_works_in_green_code(
    installed: None, make_client: Any, coll: Any
) -> None:
    coll.insert_one({"x": 1})
    raw = vars(Pool)["_get_conn"]
    seen: list[bool] = []

    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(True)
        return raw(self, *args, **kwargs)  # wrapt: instance=None, self in args

    client = make_client()
    c = client[coll.database.name][coll.name]

    @motorpatch.green
    def find() -> Any:
        return c.find_one({}, {"_id": 0})

    Pool._get_conn = traced  # type: ignore[method-assign]
    try:
        green = run_on("asyncio", lambda: asyncio.gather(find(), find()), timeout=30)
        plain = c.find_one({}, {"_id": 0})
    finally:
        Pool._get_conn = raw
    assert green == [{"x": 1}, {"x": 1}] and plain == {"x": 1}
    assert len(seen) >= 3


def test_a_plain_server_selection_wait_on_the_loop_is_reported_on_every_pymongo(
    installed: None,
) -> None:
    """No server at that port: the call's only wait is server selection (it never reaches a
    pool checkout), so the report must come from the selection wait itself."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=200, connect=False
    )

    async def main() -> Any:
        def ping() -> Any:
            try:
                client.admin.command("ping")
            except ServerSelectionTimeoutError as exc:
                return type(exc)
            return None

        return _blocking_warnings(ping)

    before = motorpatch.stats()["blocking_calls"]
    try:
        outcome, reported = run_on("asyncio", main, timeout=30)
    finally:
        client.close()
    assert outcome is ServerSelectionTimeoutError
    assert reported, f"not reported on PyMongo {pymongo.version}"
    assert motorpatch.stats()["blocking_calls"] > before


def test_raise_mode_refuses_the_plain_server_selection_wait_too() -> None:
    motorpatch.install(blocking="raise")
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=200, connect=False
    )

    async def main() -> None:
        client.admin.command("ping")

    try:
        with pytest.raises(motorpatch.GreenContextError, match=r"@motorpatch\.green"):
            run_on("asyncio", main, timeout=30)
    finally:
        client.close()
        motorpatch.uninstall()

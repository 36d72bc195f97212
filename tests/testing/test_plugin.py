"""The opt-in pytest plugin ``motorpatch.testing``, run in fresh pytest processes (pytester)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proxy import FaultProxy

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(pytester: pytest.Pytester, server_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Run the inner tests in a subprocess with the plugin on and MONGODB_URI set."""
    monkeypatch.setenv("MONGODB_URI", server_uri)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))

    def go(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "-p", "motorpatch.testing", "-p", "no:cacheprovider", "-o", "asyncio_mode=strict",
            "-o", "asyncio_default_fixture_loop_scope=function", *args, timeout=120,
        )

    yield go


GREEN_TESTS = '''
import asyncio, time
import greenlet, pytest, motorpatch
from motorpatch.testing import assert_loop_responsive

@pytest.mark.green
def test_runs_as_green_code_on_a_running_loop(mongo_client):
    loop = asyncio.get_running_loop()
    assert getattr(greenlet.getcurrent(), "motorpatch_loop", None) is loop
    assert motorpatch.is_installed()
    ran = []
    loop.call_soon(ran.append, "loop ran")
    coll = mongo_client.plugin_test.c
    coll.insert_one({"x": 1})  # parks: the loop runs the callback meanwhile
    assert ran == ["loop ran"]
    assert coll.find_one({}, {"_id": 0}) == {"x": 1}
    coll.drop()

@pytest.mark.green(loop="uvloop")
def test_on_uvloop(mongo_client):
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    assert mongo_client.admin.command("ping")["ok"] == 1

def test_plain_tests_are_untouched(mongo_client):
    assert asyncio._get_running_loop() is None
    assert mongo_client.admin.command("ping")["ok"] == 1

@pytest.mark.green
def test_green_marker_on_an_async_test_is_refused():
    pass

@pytest.mark.green(max_loop_ms=30)
def test_marker_limit_fails_on_a_stall():
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        pass
'''


def test_fixtures_and_green_marker(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile(test_inner=GREEN_TESTS.replace(
        "def test_green_marker_on_an_async_test_is_refused():\n    pass",
        "async def test_green_marker_on_an_async_test_is_refused():\n    pass",
    ))
    result = run("-v")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        "*test_green_marker_on_an_async_test_is_refused*",
        "*runs a *synchronous* test as green code, but this test is 'async def'*",
    ])
    result.stdout.fnmatch_lines(["*stalled for * ms (limit 30 ms)*test_inner.py:*"])


def test_mongodb_uri_starts_an_embedded_server(
    pytester: pytest.Pytester, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_inner='''
def test_uri(mongodb_uri, mongo_client):
    assert mongodb_uri.startswith("mongodb://127.0.0.1:")
    assert mongo_client.admin.command("ping")["ok"] == 1
''')
    monkeypatch.delenv("MONGODB_URI")
    run().assert_outcomes(passed=1)


RESPONSIVE = '''
import os, time
import pymongo, pytest, motorpatch
from motorpatch.testing import assert_loop_responsive

SLOW = os.environ["SLOW_URI"]  # every reply delayed 150 ms

@pytest.fixture
def slow():
    client = pymongo.MongoClient(SLOW, serverSelectionTimeoutMS=10000)
    client.admin.command("ping")
    yield client.plugin_test.c
    client.close()

@pytest.mark.green
def test_green_query_keeps_the_loop_responsive(slow, loop_responsive):
    with loop_responsive(max_ms=100) as watch:
        slow.find_one({})
    assert watch.worst is None

@pytest.mark.asyncio
async def test_blocking_query_fails_naming_its_line(slow):
    motorpatch.install()
    with assert_loop_responsive(max_ms=100):
        slow.find_one({})  # blocking-line

@pytest.mark.green
def test_green_cpu_stall_fails_naming_its_line():
    with assert_loop_responsive(max_ms=50):
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass
        motorpatch.await_(__import__("asyncio").sleep(0))  # stall-line

@pytest.mark.asyncio
async def test_sleep_in_a_coroutine_fails_without_a_site():
    with assert_loop_responsive(max_ms=50):
        time.sleep(0.2)
'''


def test_assert_loop_responsive(
    pytester: pytest.Pytester, run, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy.delay = 0.15
    monkeypatch.setenv("SLOW_URI", proxy.uri)
    pytester.makepyfile(test_inner=RESPONSIVE)
    result = run("-W", "ignore::motorpatch.BlockingCallWarning")
    result.assert_outcomes(passed=1, failed=3)
    lines = RESPONSIVE.splitlines()
    blocking = next(n for n, t in enumerate(lines) if "blocking-line" in t)
    stall = next(n for n, t in enumerate(lines) if "stall-line" in t)
    result.stdout.fnmatch_lines([
        f"*worst: * ms at *test_inner.py:{blocking} in test_blocking_query_fails_naming_its_line*"
        "a PyMongo operation outside green code*",
    ])
    result.stdout.fnmatch_lines([
        f"*worst: * ms at *test_inner.py:{stall} in test_green_cpu_stall_fails_naming_its_line*"
        "green code that ran without waiting*",
    ])
    result.stdout.fnmatch_lines(["*held by code motorpatch does not see*"])


COEXIST = '''
import asyncio
import pytest, motorpatch

@motorpatch.green
def ping(client):
    return client.admin.command("ping")["ok"]

@pytest.mark.green
def test_green(mongo_client):
    assert ping(mongo_client) == 1

@pytest.mark.asyncio
async def test_pytest_asyncio_marked(mongo_client):
    motorpatch.install()
    assert await ping(mongo_client) == 1

async def test_unmarked_async(mongo_client):  # run only in auto mode
    motorpatch.install()
    assert await ping(mongo_client) == 1

@pytest.mark.anyio
async def test_anyio(mongo_client):
    motorpatch.install()
    assert await ping(mongo_client) == 1

@pytest.fixture
def anyio_backend():
    return "asyncio"
'''


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_beside_pytest_asyncio_and_anyio(pytester: pytest.Pytester, run, mode: str) -> None:
    pytester.makepyfile(test_inner=COEXIST)
    result = run("-o", f"asyncio_mode={mode}")
    if mode == "auto":
        result.assert_outcomes(passed=4)
    else:  # strict: the unmarked async test is not run by anyone (pytest fails it)
        result.assert_outcomes(passed=3, failed=1)
        result.stdout.fnmatch_lines(["*test_unmarked_async*"])


LEFT_PARKED = '''
import asyncio, os
import pymongo, pytest, motorpatch
from tests.support.proxy import FaultProxy

PROXY = FaultProxy(int(os.environ["TARGET_PORT"])).start()
CLIENT = pymongo.MongoClient(PROXY.uri, maxPoolSize=1, waitQueueTimeoutMS=3000)
CLIENT.admin.command("ping")
unwound = []

@motorpatch.green
def slow_find():
    try:
        return CLIENT.plugin_test.c.find_one({})
    finally:
        unwound.append("finally ran")

def test_1_closes_its_loop_under_a_parked_call():
    motorpatch.install()
    PROXY.hang()
    loop = asyncio.new_event_loop()
    async def start():
        seen = PROXY.requests
        asyncio.ensure_future(slow_find())
        await asyncio.to_thread(PROXY.wait_requests, seen + 1)
    loop.run_until_complete(start())
    loop.close()  # without cancelling: the call keeps the only pool slot

@pytest.mark.asyncio
async def test_2_pytest_asyncio_leaves_one_in_a_task():
    PROXY.hang()
    seen = PROXY.requests
    asyncio.ensure_future(slow_find())
    await asyncio.to_thread(PROXY.wait_requests, seen + 1)

@pytest.mark.anyio
async def test_3_anyio_leaves_one_in_a_task():
    PROXY.hang()
    seen = PROXY.requests
    asyncio.ensure_future(slow_find())
    await asyncio.to_thread(PROXY.wait_requests, seen + 1)

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.green
def test_4_the_pool_slot_is_free_again():
    PROXY.resume()
    assert unwound == ["finally ran"] * 3
    assert CLIENT.plugin_test.c.find_one({}) is None  # not WaitQueueTimeoutError
'''


def test_green_call_left_on_a_closed_loop_is_an_error_and_is_ended(
    pytester: pytest.Pytester, run, server_address: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TARGET_PORT", str(server_address[1]))
    pytester.makepyfile(test_inner=LEFT_PARKED)
    result = run("-v", "-W", "ignore::motorpatch.BlockingCallWarning")
    # test_1 passes its call but errors at teardown; pytest-asyncio and anyio cancel theirs.
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_1_closes_its_loop_under_a_parked_call*",
        "*test_1_closes_its_loop_under_a_parked_call left 1 green call(s) parked on an event "
        "loop that was closed without cancelling them: slow_find (parked on socket read)*",
    ])

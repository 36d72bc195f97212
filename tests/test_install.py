"""install()/uninstall(): idempotence, thread safety, exact restoration, version refusal."""

from __future__ import annotations

import importlib
import threading
import time
import types

import pymongo
import pymongo.lock
import pymongo.synchronous.client_session
import pymongo.synchronous.mongo_client
import pymongo.synchronous.pool
import pymongo.synchronous.topology
import pytest

import motorpatch
from motorpatch import UnsupportedVersionError, UntestedVersionWarning
from motorpatch._versions import SUPPORTED, check_pymongo
from motorpatch.patches import (
    REGISTRY,
    Patch,
    applied,
    apply_all,
    find_stale_references,
    remove_all,
)

# Written out by hand, independently of the registry, so a patch that the
# registry forgets to restore (or restores to a copy) is caught.
VERSION = pymongo.version_tuple[:2]
PATCHED = [
    (pymongo.synchronous.pool, "_cond_wait"),
    (pymongo.synchronous.pool.Pool, "_get_conn"),
    (
        importlib.import_module(
            "pymongo.periodic_executor"
            if VERSION >= (4, 11)
            else "pymongo.synchronous.periodic_executor"  # its home before 4.11
        ).PeriodicExecutor,
        "join",
    ),
]
if VERSION >= (4, 12):  # connection set-up moved to pool_shared, behind NetworkingInterface
    PATCHED += [(pymongo.synchronous.pool, "_configured_socket_interface")]
else:
    PATCHED += [(pymongo.synchronous.pool, "_configured_socket")]
if VERSION >= (4, 11):  # server selection waits through pymongo.lock._cond_wait
    PATCHED += [(pymongo.synchronous.topology, "_cond_wait")]
else:  # ... and before, on the topology's condition, and every read polls first
    PATCHED += [
        (pymongo.synchronous.topology.Topology, "_select_servers_loop"),
        (pymongo.synchronous.topology.Topology, "request_check_all"),
        (importlib.import_module("pymongo.synchronous.network"), "wait_for_read"),
    ]
PATCHED += [  # mongodb+srv lookups; the resolver moved under synchronous/ in 4.12
    (
        importlib.import_module(
            "pymongo.synchronous.srv_resolver" if VERSION >= (4, 12) else "pymongo.srv_resolver"
        ),
        "_resolve",
    )
]
if VERSION >= (4, 17):  # the back-off sleeps arrived in 4.17
    PATCHED += [
        (pymongo.synchronous.mongo_client, "time"),
        (pymongo.synchronous.client_session, "time"),
    ]


def _snapshot() -> list[object]:
    return [vars(owner)[name] for owner, name in PATCHED]


def test_every_registered_patch_is_in_the_hand_written_list() -> None:
    registered = {(p.module, p.attr) for p in REGISTRY if p.applies()}
    listed = {
        (
            getattr(owner, "__module__", None) if isinstance(owner, type) else owner.__name__,
            f"{owner.__name__}.{name}" if isinstance(owner, type) else name,
        )
        for owner, name in PATCHED
    }
    assert registered == listed


def test_install_patches_and_uninstall_restores_identical_objects() -> None:
    before = _snapshot()
    motorpatch.install()
    assert motorpatch.is_installed()
    during = _snapshot()
    for original, patched in zip(before, during, strict=True):
        assert patched is not original
    motorpatch.uninstall()
    assert not motorpatch.is_installed()
    after = _snapshot()
    for original, restored in zip(before, after, strict=True):
        assert restored is original
    assert vars(pymongo.synchronous.mongo_client).get("time", time) is time
    if VERSION >= (4, 11):  # imported by name from pymongo.lock
        assert pymongo.synchronous.pool._cond_wait is pymongo.lock._cond_wait


def test_install_and_uninstall_are_idempotent() -> None:
    before = _snapshot()
    motorpatch.install()
    once = _snapshot()
    motorpatch.install()
    assert _snapshot() == once and all(a is b for a, b in zip(once, _snapshot(), strict=True))
    motorpatch.uninstall()
    motorpatch.uninstall()
    assert all(a is b for a, b in zip(before, _snapshot(), strict=True))


def test_install_is_thread_safe() -> None:
    before = _snapshot()
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        motorpatch.install()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Patched exactly once: one wrapt layer over each original.
    for original, patched in zip(before, _snapshot(), strict=True):
        assert patched.__wrapped__ is original
    motorpatch.uninstall()
    assert all(a is b for a, b in zip(before, _snapshot(), strict=True))


def test_install_rejects_an_unknown_blocking_mode() -> None:
    with pytest.raises(ValueError, match=r"blocking='loud'.*'warn', 'raise', 'ignore'"):
        motorpatch.install(blocking="loud")  # type: ignore[arg-type]
    assert not motorpatch.is_installed()


@pytest.mark.parametrize("version", ["4.8.2", "4.21.0", "5.0.0", "garbage"])
def test_untested_version_with_matching_internals_installs_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    monkeypatch.setattr(pymongo, "version", version)
    with pytest.warns(UntestedVersionWarning) as record:
        motorpatch.install()
    assert motorpatch.is_installed()
    message = str(record[0].message)
    assert version in message
    assert f"{SUPPORTED[0][0]}.{SUPPORTED[0][1]} to {SUPPORTED[1][0]}.{SUPPORTED[1][1]}" in message
    assert "UntestedVersionWarning" in message  # says how to silence it
    assert record[0].filename == __file__  # points at the caller of install()


def test_tested_version_installs_without_a_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_pymongo(REGISTRY)


def _changed_signature(condition, deadline, extra):  # type: ignore[no-untyped-def]
    raise AssertionError("never called")


@pytest.mark.parametrize("change", ["missing", "signature"])
def test_changed_internals_are_refused_naming_the_change(
    monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    before = _snapshot()
    monkeypatch.setattr(pymongo, "version", "4.99.0")
    if change == "missing":
        monkeypatch.delattr(pymongo.synchronous.pool.Pool, "_get_conn")
        expected = "pymongo.synchronous.pool.Pool._get_conn does not exist"
    else:
        monkeypatch.setattr(pymongo.synchronous.pool, "_cond_wait", _changed_signature)
        expected = "pymongo.synchronous.pool._cond_wait(condition, deadline, extra) no longer"
    with pytest.raises(UnsupportedVersionError) as info:
        motorpatch.install()
    message = str(info.value)
    assert expected in message
    assert "4.99.0" in message and "Nothing was patched" in message
    assert not motorpatch.is_installed()
    monkeypatch.undo()
    assert all(a is b for a, b in zip(before, _snapshot(), strict=True))


def test_a_module_still_holding_an_original_is_reported() -> None:
    # A stand-in "pymongo" module that imported _cond_wait by name but is not patched.
    stray = types.ModuleType("pymongo._motorpatch_test_stray")
    stray._cond_wait = pymongo.synchronous.pool._cond_wait  # type: ignore[attr-defined]
    import sys

    sys.modules[stray.__name__] = stray
    try:
        patch = Patch(
            "pymongo.synchronous.pool",
            "_cond_wait",
            why="test",
            wrapper=lambda w, i, a, k: w(*a, **k),
        )
        apply_all([patch])
        try:
            stale = find_stale_references([patch])
        finally:
            assert remove_all() == []
        # Patching only the pool leaves topology's by-name import (4.11+) stale too.
        where = "(patched at pymongo.synchronous.pool._cond_wait)"
        expected = [f"pymongo._motorpatch_test_stray._cond_wait {where}"]
        if VERSION >= (4, 11):
            expected.append(f"pymongo.synchronous.topology._cond_wait {where}")
        assert sorted(stale) == expected
    finally:
        del sys.modules[stray.__name__]


def test_install_finds_no_stale_references_in_this_pymongo() -> None:
    motorpatch.install()
    assert find_stale_references(REGISTRY) == []


def test_a_failed_patch_rolls_back_the_ones_before_it() -> None:
    before = _snapshot()
    bad = Patch(
        "pymongo.synchronous.pool", "NoSuchThing.attr", why="test", wrapper=lambda w, i, a, k: None
    )
    with pytest.raises(AttributeError):
        apply_all([*REGISTRY, bad])
    assert all(a is b for a, b in zip(before, _snapshot(), strict=True))
    assert applied() == []

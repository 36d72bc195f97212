"""Pre-forked Tornado apps: ``install()`` before ``fork_processes``, a client per child.

``fork_app.py`` runs as a subprocess against the session's server behind the
fault proxy (every reply 0.3 s late). Each of its two children serves
concurrent requests from green handlers, and they overlap: every handler of
a burst is in flight at once (the last one starts before the first one
finishes). A client created and used before the fork, then used in a child,
behaves as plain PyMongo's does there (its "MongoClient opened before fork"
warning) and does not deadlock; every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

APP = Path(__file__).with_name("fork_app.py")
ROOT = Path(__file__).resolve().parents[2]
BURST = 6  # concurrent requests per child
DELAY = 0.3  # the fault proxy's reply delay


class App:
    """The forking app as a subprocess (its own session), with its output lines."""

    def __init__(self, uri: str, namespace: str, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), uri, namespace, *flags],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True).start()
        try:
            self.shared = int(self.expect("SHARED")[0])
            children = [self.expect("READY") for _ in range(2)]
        except BaseException:
            self.kill()  # never leave a half-started app (and its children) behind
            raise
        self.children = {int(task): (int(pid), int(port)) for task, pid, port in children}

    def _pump(self, stream: Any, out: bool) -> None:
        for line in stream:
            (self.lines.put if out else self.stderr.append)(line.rstrip("\n"))

    def expect(self, word: str, timeout: float = 30.0) -> list[str]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {word} line; stderr: {self.stderr}") from None
        head, *rest = line.split() or [""]
        assert head == word, f"{line!r}; stderr: {self.stderr}"
        return rest

    def get(self, port: int, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as reply:
            return dict(json.loads(reply.read()))

    def stop(self) -> int:
        """Ask each child to stop; the parent exits once both have. Returns its status."""
        for _, port in self.children.values():
            self.get(port, "/stop")
        return self.proc.wait(20)

    def kill(self) -> None:
        if self.proc.poll() is None:  # only when a test failed part-way
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def namespace(coll: Any) -> str:
    coll.insert_one({"hello": "from the parent's server"})
    return f"{coll.database.name}.{coll.name}"


@pytest.fixture
def start_app(proxy: Any, namespace: str) -> Iterator[Any]:
    apps: list[App] = []
    proxy.delay = DELAY

    def start(*flags: str) -> App:
        apps.append(App(proxy.uri, namespace, *flags))
        return apps[-1]

    yield start
    for app in apps:
        app.kill()


def test_each_forked_child_serves_overlapping_green_requests(start_app):
    app = start_app()
    pids = {pid for pid, _ in app.children.values()}
    assert len(pids) == 2 and app.proc.pid not in pids
    with ThreadPoolExecutor(2 * BURST) as pool:
        futures = [
            pool.submit(app.get, port, "/find")
            for _, port in app.children.values()
            for _ in range(BURST)
        ]
        replies = [f.result(30) for f in futures]
        shared = list(pool.map(lambda _: app.get(app.shared, "/find"), range(BURST)))
    for task, (pid, _) in app.children.items():
        mine = [r for r in replies if r["pid"] == pid]
        assert len(mine) == BURST and {r["task"] for r in mine} == {task}
        assert all(r["doc"] == {"hello": "from the parent's server"} for r in mine)
        # Overlap: all of the child's handlers were waiting on MongoDB at once.
        assert max(r["start"] for r in mine) < min(r["end"] for r in mine), mine
        assert min(r["end"] - r["start"] for r in mine) >= DELAY * 0.9
    assert {r["pid"] for r in shared} <= pids
    assert app.stop() == 0
    assert not [line for line in app.stderr if "Warning" in line], app.stderr


PLAIN_FORK = textwrap.dedent(
    """
    import json, os, sys, warnings
    import pymongo
    client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=10000)
    client.admin.command("ping")
    pid = os.fork()
    if pid == 0:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            doc = client[sys.argv[2]][sys.argv[3]].find_one({}, {"_id": 0})
        print(json.dumps({"doc": doc, "warnings": [
            [w.category.__name__, str(w.message)] for w in caught]}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    """
)


def test_client_created_before_fork_behaves_as_plain_pymongo(start_app, proxy, namespace):
    db, coll = namespace.split(".", 1)
    plain = subprocess.run(
        [sys.executable, "-c", PLAIN_FORK, proxy.uri, db, coll],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    reference = json.loads(plain.stdout)
    assert any("opened before fork" in message for _, message in reference["warnings"])

    app = start_app("--prefork")
    for pid, port in app.children.values():
        with ThreadPoolExecutor(3) as pool:  # concurrent first uses in the child, bounded
            replies = list(pool.map(app.get, [port] * 3, ["/prefork"] * 3))
        assert {r["pid"] for r in replies} == {pid}
        assert all(r["doc"] == reference["doc"] for r in replies)
        seen = [w for r in replies for w in r["warnings"]]
        assert seen == reference["warnings"]  # once per child, as in plain PyMongo
    assert app.stop() == 0

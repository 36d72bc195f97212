"""The README's demo command on a fresh clone, in a new virtual environment (``./dev fresh-demo``).

A machine that already ran the tests has every development tool installed, so
a missing install step in ``./dev demo`` hides there. This check clones the
repository's HEAD into a temporary folder, runs ``./dev demo --port 0`` in it
(which must create its own ``.venv``), and then:

- waits for the URL the demo prints, and times it from the command's start;
- posts a message through the JSON API and finds it on the board page and in
  ``/api/messages``; ``/stats`` answers with JSON;
- lists the new environment's packages: the demo's (motorpatch's runtime
  dependencies and nx-27017) must be there, the development tools (pytest,
  selenium, mypy, ruff, MkDocs...) must not;
- stops the demo with SIGINT and expects a clean exit.

Standard library only: it runs before anything is installed. ``MONGODB_URI``
is removed from the demo's environment so that it starts its embedded server.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 600.0  # a cold package cache on a slow mirror; normally well under a minute
STOP_TIMEOUT = 30.0
NEEDED = {"motorpatch", "pymongo", "greenlet", "tornado", "wrapt", "nx-27017"}
UNWANTED = {
    "pytest", "selenium", "mypy", "ruff", "mkdocs", "mkdocs-material", "mockupdb",
    "hypothesis", "trustme", "mongoengine",
}


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _http(method: str, url: str, body: object = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


def _installed(python: Path) -> set[str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return {entry["name"].lower().replace("_", "-") for entry in json.loads(out)}


class Failed(Exception):
    """The check failed; the message says how."""


def _check(url: str, clone: Path) -> None:
    """Raise :class:`Failed` unless the running demo at ``url`` works with only its own needs."""
    text = f"fresh-demo {uuid.uuid4().hex[:8]}"
    try:
        status, _ = _http("POST", url + "api/messages", {"author": "ci", "text": text})
        board = _http("GET", url)[1]
        listed = json.loads(_http("GET", url + "api/messages")[1])["messages"]
        json.loads(_http("GET", url + "stats")[1])
    except (OSError, ValueError, KeyError) as exc:  # URLError and HTTPError are OSErrors
        raise Failed(f"the demo did not answer as expected: {exc!r}") from exc
    if status not in (200, 201):
        raise Failed(f"POST /api/messages answered {status}")
    if text not in board:
        raise Failed("the posted message is not on the board page")
    if not any(m.get("text") == text for m in listed):
        raise Failed("the posted message is not in /api/messages")
    packages = _installed(clone / ".venv" / "bin" / "python")
    if missing := NEEDED - packages:
        raise Failed(f"the demo's environment lacks {sorted(missing)}")
    if extra := UNWANTED & packages:
        raise Failed(f"./dev demo installed development tools: {sorted(extra)}")


def _wait_for_url(proc: subprocess.Popen[str], lines: queue.Queue[str | None],
                  output: list[str], deadline: float) -> str:
    """The URL the demo prints when it serves, collecting its output meanwhile."""
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise Failed(f"no URL within {READY_TIMEOUT:.0f} s") from None
        if line is None:
            raise Failed(f"./dev demo exited ({proc.wait()}) before serving")
        output.append(line)
        if match := re.search(r"running at (http://127\.0\.0\.1:\d+/)", line):
            return match.group(1)


def _run(clone: Path, output: list[str]) -> float:
    """Run ./dev demo in ``clone``, check it, stop it; the seconds it took to serve."""
    env = {k: v for k, v in os.environ.items() if k not in {"MONGODB_URI", "MOTORPATCH_VENV"}}
    started = time.monotonic()
    proc = subprocess.Popen(
        ["./dev", "demo", "--port", "0"], cwd=clone, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        url = _wait_for_url(proc, lines, output, started + READY_TIMEOUT)
        ready = time.monotonic() - started
        _check(url, clone)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise Failed(f"the demo did not stop within {STOP_TIMEOUT:.0f} s of Ctrl-C") from None
    if code != 0:
        raise Failed(f"the demo exited with {code} after Ctrl-C")
    return ready


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="motorpatch-fresh-"))
    clone = work / "motorpatch"
    output: list[str] = []
    try:
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
        ready = _run(clone, output)
    except Failed as exc:
        print(f"fresh-demo FAILED: {exc}. The demo's output:\n{''.join(output)}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"fresh-demo: ./dev demo on a fresh clone served the board {ready:.1f} s after the "
        "command started (new .venv, no development tools); post, list and /stats worked; "
        "Ctrl-C stopped it cleanly."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real servers for the tests: nx-27017 as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["NxServer", "free_port", "wait_listening"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(
    port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once 127.0.0.1:port accepts connections; raise if it does not in time."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout}s"
                ) from None
            time.sleep(0.05)  # polling a port we do not control; no event to wait on


def _nx_executable() -> str:
    # nx-27017 needs PyMongo >= 4.18: environments testing an older PyMongo run it from
    # another environment, named by MOTORPATCH_NX (tox.ini, ./dev matrix).
    found = (
        os.environ.get("MOTORPATCH_NX")
        or shutil.which("nx-27017")
        or str(Path(sys.executable).with_name("nx-27017"))
    )
    if not Path(found).exists():
        raise RuntimeError(
            f"nx-27017 is not installed (looked for {found}): run ./dev test, or "
            "pip install nx-27017, or set MOTORPATCH_NX to its executable"
        )
    return found


class NxServer:
    """An nx-27017 process with an in-memory database on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="motorpatch-nx-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> NxServer:
        log = Path(self._dir, "nx.log")
        self.proc = subprocess.Popen(
            [
                _nx_executable(),
                "--db",
                "memory",
                "--host",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--log-file",
                str(log),
                "--pid-file",
                str(Path(self._dir, "nx.pid")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_listening(self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                # nx-27017 0.8.1 sometimes ignores SIGTERM; its data is in memory anyway.
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

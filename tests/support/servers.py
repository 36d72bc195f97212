"""Real servers for the tests: nx-27017 as a subprocess on a free loopback port.

The server class is the shipped plugin's (``motorpatch.testing.EmbeddedServer``);
this module adds what only the project's tests need: ``MOTORPATCH_NX``, a
settable ``proc``, and the port helpers the web-app fixtures share.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from motorpatch.testing import EmbeddedServer

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


class NxServer(EmbeddedServer):
    """The shipped plugin's embedded nx-27017, as the project's tests run it.

    Its executable may come from ``MOTORPATCH_NX``; its URI carries no options
    (PyMongo discovers the standalone server); ``proc`` is the process, which a
    test may kill or swap for a restarted one's; ``cleanup()`` stops it and
    removes its files.
    """

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port, executable=_nx_executable())

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self._proc

    @proc.setter
    def proc(self, proc: subprocess.Popen[bytes] | None) -> None:
        self._proc = proc

    def cleanup(self) -> None:
        self.stop()

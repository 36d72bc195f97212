"""An embedded nx-27017 MongoDB server for tests, on a free loopback port.

nx-27017 comes with ``motorpatch[testing]``; its in-memory database lives as
long as the process. The ``mongodb_uri`` fixture starts one per session;
motorpatch's own test suite starts its servers with the same class.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

__all__ = ["EmbeddedServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _executable() -> str:
    found = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
    if not Path(found).exists():
        raise RuntimeError(
            "motorpatch.testing needs nx-27017 for its embedded MongoDB server and it is not "
            "installed: pip install 'motorpatch[testing]', or set MONGODB_URI to a server "
            "of yours."
        )
    return found


class EmbeddedServer:
    """An nx-27017 process on 127.0.0.1; ``start()`` returns once it accepts connections.

    :param port: the port to listen on (a restart on the same port); by
        default a free one.
    :param executable: the nx-27017 command; by default the one on ``PATH``
        or beside this Python.

    ``stop()`` ends the process and removes its log directory.
    """

    def __init__(self, port: int | None = None, *, executable: str | None = None) -> None:
        self.port = port or _free_port()
        self._executable = executable
        self._dir = tempfile.mkdtemp(prefix="motorpatch-testing-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 30.0) -> Self:
        """Start the server; return once it accepts connections, else raise naming why."""
        self._proc = subprocess.Popen(
            [self._executable or _executable(),
             "--db", "memory", "--host", "127.0.0.1", "-p", str(self.port),
             # its own pid file: nx-27017 refuses to start while another one's is live
             "--log-file", os.path.join(self._dir, "nx.log"),
             "--pid-file", os.path.join(self._dir, "nx.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"nx-27017 exited with {self._proc.returncode} before listening on "
                    f"127.0.0.1:{self.port} (log: {self._dir}/nx.log)"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"nx-27017 did not listen within {timeout} s") from None
                time.sleep(0.05)  # a port we do not control: nothing to wait on but polling

    def stop(self) -> None:
        """Terminate the server (kill it after 2 s: its data is in memory) and remove its files."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

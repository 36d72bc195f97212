"""An embedded MongoDB-compatible server for the demo: nx-27017, in memory, on loopback.

``python -m examples.messages`` uses it when no MongoDB URI is given, so the
demo runs with nothing but ``pip install nx-27017``. The server is a child
process on a free port of 127.0.0.1 with its log and pid file in a private
temporary directory; :meth:`EmbeddedMongo.stop` (or leaving the ``with``
block) terminates it and removes that directory. On Linux the child is also
told to exit if the demo process dies without cleaning up (``kill -9``).
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["EmbeddedMongo", "EmbeddedMongoError", "free_port", "nx_executable"]

HOST = "127.0.0.1"


class EmbeddedMongoError(RuntimeError):
    """nx-27017 is missing, or it did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def nx_executable() -> str:
    """The nx-27017 command: on PATH, or next to this Python (an unactivated virtualenv)."""
    found = shutil.which("nx-27017")
    if found:
        return found
    beside = Path(sys.executable).with_name("nx-27017")
    if beside.exists():
        return str(beside)
    raise EmbeddedMongoError(
        "nx-27017 is not installed, so there is no embedded server to start. "
        "Install it (pip install nx-27017), or point the demo at a MongoDB server "
        "with --mongodb-uri or the MONGODB_URI environment variable."
    )


def _exit_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to kill the child when its parent dies, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


class EmbeddedMongo:
    """nx-27017 with an in-memory database, as a child process on a free loopback port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, startup_timeout: float = 30.0, attempts: int = 3) -> None:
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def __enter__(self) -> EmbeddedMongo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> EmbeddedMongo:
        """Start the server and return once it accepts connections."""
        executable = nx_executable()
        self._dir = Path(tempfile.mkdtemp(prefix="motorpatch-messages-"))
        try:
            # A free port can be taken between our check and nx-27017's bind: retry then.
            for _ in range(self.attempts):
                self.port = free_port()
                self.proc = subprocess.Popen(
                    [
                        executable, "--db", "memory", "--host", HOST, "-p", str(self.port),
                        "--log-file", str(self._dir / "nx.log"),
                        "--pid-file", str(self._dir / "nx.pid"),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    # Its own session: a Ctrl-C in the terminal reaches only the demo,
                    # which then stops the server in order, after the web server.
                    start_new_session=True,
                    preexec_fn=_exit_with_parent(),  # noqa: PLW1509 - no threads yet
                )
                if self._wait_listening():
                    return self
            raise EmbeddedMongoError(
                f"nx-27017 exited before listening on {HOST}:{self.port}. Its log:\n"
                + self._log_tail()
            )
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> bool:
        """True once the port accepts connections; False if the process exited first."""
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while self.proc.poll() is None:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return True
            except OSError:
                if time.monotonic() > deadline:
                    raise EmbeddedMongoError(
                        f"nx-27017 did not listen on {HOST}:{self.port} within "
                        f"{self.startup_timeout:g}s. Its log:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)  # polling a port of another process: there is no event to wait on
        return False

    def _log_tail(self, lines: int = 20) -> str:
        try:
            assert self._dir is not None
            text = (self._dir / "nx.log").read_text(errors="replace")
        except (AssertionError, OSError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, grace: float = 2.0) -> None:
        """Terminate the server, kill it after ``grace`` s, remove its directory. Idempotent.

        nx-27017 exits within a fraction of a second of SIGTERM, but now and then
        (0.8.1) it never does; its database is in memory, so killing it loses nothing.
        """
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

"""``GreenSocket``: a socket (plain or TLS) that parks in green code and blocks elsewhere.

It wraps a real ``socket.socket`` or ``ssl.SSLSocket`` whose descriptor stays
non-blocking for its whole life, and keeps the timeout itself. Each call
first tries the operation; when it would block, it waits for readiness with
:func:`motorpatch.socket_shim._wait.wait_fd` (parked on the current loop in
green code, ``poll()`` elsewhere) and tries again. It raises exactly what a
real socket raises: ``TimeoutError("timed out")`` (``socket.timeout``) when
the timeout passes, ``BlockingIOError``/``ssl.SSLWantReadError`` when the
timeout is zero, ``OSError`` otherwise. PyMongo's network layer therefore
cannot tell it from the socket it wraps, and one connection can serve green
code on any loop and plain threads, one after the other.

Nothing is left pending between calls: a read that times out (PyMongo polls
in 0.5 s slices) leaves no registration and no half-read; the next call
starts afresh with the buffer PyMongo passes.
"""

from __future__ import annotations

import math
import operator
import socket
import ssl
import time
from typing import Any

from motorpatch.socket_shim._wait import wait_fd

__all__ = ["GreenSocket"]

# What "would block" looks like: a plain socket raises BlockingIOError, a TLS
# socket says which direction it needs (a TLS read may need to write, and back).
_RECV_WANTS_READ = (BlockingIOError, ssl.SSLWantReadError)
_SEND_WANTS_WRITE = (BlockingIOError, ssl.SSLWantWriteError)


class GreenSocket:
    """A drop-in stand-in for a connected socket, safe to use from green code.

    Attributes not defined here (``setsockopt``, ``getpeercert``,
    ``getpeername``, ``version``...) are those of the wrapped socket.
    """

    __slots__ = ("_sock", "_timeout")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout: float | None = sock.gettimeout()
        if sock.fileno() != -1:
            sock.setblocking(False)

    @property
    def raw(self) -> socket.socket:
        """The wrapped socket (non-blocking: do not use it for I/O directly)."""
        return self._sock

    # -- timeouts, as socket.socket defines them --------------------------------
    def gettimeout(self) -> float | None:
        return self._timeout

    def settimeout(self, value: float | None) -> None:
        if value is not None and not (type(value) is float and value >= 0.0):
            # As CPython parses it: a float, or an integer (TypeError for anything else).
            value = float(value if isinstance(value, float) else operator.index(value))
            if math.isnan(value):
                raise ValueError("Invalid value NaN (not a number)")
            if value < 0.0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """As ``socket.getblocking``: ``gettimeout() != 0`` (the raw fd is always non-blocking)."""
        return self._timeout != 0.0

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self, write: bool, deadline: float | None) -> None:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("timed out")
        if not wait_fd(self._sock.fileno(), write=write, timeout=remaining):
            raise TimeoutError("timed out")

    # -- I/O ----------------------------------------------------------------------
    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Read into ``buffer``, waiting at most the timeout; like ``socket.recv_into``."""
        args = (buffer, nbytes, flags) if (nbytes or flags) else (buffer,)
        deadline: float | None = None
        while True:
            try:
                return self._sock.recv_into(*args)
            except _RECV_WANTS_READ:
                if self._timeout == 0.0:
                    raise
                write = False
            except ssl.SSLWantWriteError:
                if self._timeout == 0.0:
                    raise
                write = True
            if deadline is None:
                deadline = self._deadline()
            self._wait(write, deadline)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Read up to ``bufsize`` bytes, waiting at most the timeout; like ``socket.recv``."""
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize, flags) if flags else self.recv_into(buf)
        return bytes(buf[:n])

    def _send_some(self, data: Any, flags: int, deadline: float | None) -> tuple[int, float | None]:
        """One successful ``send`` of ``data``, waiting as needed; returns (sent, deadline)."""
        while True:
            try:
                return (self._sock.send(data, flags) if flags else self._sock.send(data)), deadline
            except ssl.SSLWantReadError:
                if self._timeout == 0.0:
                    raise
                write = False
            except _SEND_WANTS_WRITE:
                if self._timeout == 0.0:
                    raise
                write = True
            if deadline is None:
                deadline = self._deadline()
            self._wait(write, deadline)

    def send(self, data: Any, flags: int = 0) -> int:
        """Send some of ``data``, waiting at most the timeout; like ``socket.send``."""
        return self._send_some(data, flags, None)[0]

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of ``data``; the timeout bounds the whole call, as in CPython 3.5+."""
        if not flags and type(data) in (bytes, bytearray):  # PyMongo's messages: one send
            try:
                sent = self._sock.send(data)
            except (*_SEND_WANTS_WRITE, ssl.SSLWantReadError):
                sent = 0
            if sent == len(data):
                return
            data = memoryview(data)[sent:]  # the rest, with waits, below
        with memoryview(data) as view, view.cast("B") as flat:
            total = len(flat)
            sent = 0
            deadline: float | None = None
            while sent < total:
                n, deadline = self._send_some(flat[sent:], flags, deadline)
                sent += n

    # -- the rest of the socket interface --------------------------------------------
    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"<GreenSocket timeout={self._timeout!r} of {self._sock!r}>"

"""Green connection set-up: DNS, TCP connect and the TLS handshake, all parked.

``green_configured_socket`` is the green twin of PyMongo's socket set-up
(``pool._configured_socket`` in PyMongo 4.9-4.11,
``pool_shared._configured_socket_interface`` in 4.12-4.20): the same steps
and socket options, the same exceptions, the same ``SSLContext`` PyMongo
built (certificate verification, hostname check and SNI untouched), but
every wait parks the greenlet:

- DNS: ``loop.getaddrinfo`` (the loop's resolver thread pool, as Tornado's
  default resolver does); numeric hosts are resolved inline, without a thread.
- connect: a non-blocking ``connect_ex`` and a writability wait, bounded by
  ``connectTimeoutMS`` or the CSOT deadline, as PyMongo bounds it.
- TLS: ``SSLContext.wrap_socket(..., do_handshake_on_connect=False)`` and a
  ``do_handshake()`` loop that parks on want-read/want-write.

It returns a :class:`GreenSocket` (inside PyMongo's ``NetworkingInterface``
from 4.12). Helpers that moved between releases come from :mod:`._pymongo`.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from typing import Any

from pymongo import _csot

from motorpatch.bridge import green_loop, park, sleep
from motorpatch.socket_shim._pymongo import (
    HAS_NETWORKING_INTERFACE,
    SSLErrors,
    get_ssl_session,
    get_timeout_details,
    has_sni,
    raise_connection_failure,
    set_keepalive_times,
)
from motorpatch.socket_shim._wait import wait_fd
from motorpatch.socket_shim.green_socket import GreenSocket

__all__ = [
    "green_configured_socket",
    "green_configured_socket_interface",
    "green_create_connection",
]

# PyMongo raises certificate failures as this class and re-raises them unwrapped.
_CertificateError = ssl.SSLCertVerificationError


def _resolve(host: str, port: int, family: int) -> list[Any]:
    """getaddrinfo that never blocks: inline for IP literals, else in the loop's resolver."""
    try:
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    loop = green_loop()
    if loop is None:  # not green after all (e.g. a forked child): resolve as PyMongo does
        return socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    resolving = loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    return list(park(resolving, "dns"))


def _pause(seconds: float) -> None:
    """Sleep ``seconds``: parked in green code, ``time.sleep`` elsewhere."""
    loop = green_loop()
    if loop is None:
        time.sleep(seconds)
    else:
        sleep(loop, seconds, "connect")


def _connect(sock: socket.socket, address: Any, timeout: float | None) -> None:
    """Non-blocking connect with the semantics of ``sock.settimeout(timeout); sock.connect()``."""
    sock.setblocking(False)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.001
    # A unix socket says EAGAIN when the listener's accept queue is full. That is not
    # "in progress": nothing will make the socket writable when room appears (it is
    # writable at once, unconnected), so retry after short parked pauses, as the
    # blocking connect() of plain PyMongo waits for room.
    while (err := sock.connect_ex(address)) == errno.EAGAIN and sock.family == socket.AF_UNIX:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("timed out")
        _pause(pause if remaining is None else min(pause, remaining))
        pause = min(pause * 2, 0.05)
    if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not wait_fd(sock.fileno(), write=True, timeout=remaining, reason="connect"):
            raise TimeoutError("timed out")
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err not in (0, errno.EISCONN):
        raise OSError(err, os.strerror(err))


def _connect_timeout(options: Any) -> float | None:
    timeout = _csot.remaining()
    if timeout is None:
        return options.connect_timeout  # type: ignore[no-any-return]
    if timeout <= 0:
        raise TimeoutError("timed out")
    return timeout  # type: ignore[no-any-return]


def green_create_connection(address: tuple[str, int], options: Any) -> socket.socket:
    """Connect to ``address`` as PyMongo's ``_create_connection`` does, parking on every wait.

    Returns a connected, non-blocking raw socket. Can raise ``OSError``
    (``TimeoutError`` on connectTimeoutMS/CSOT), as PyMongo's function does.
    """
    host, port = address
    if host.endswith(".sock"):
        sock = socket.socket(socket.AF_UNIX)
        try:
            # PyMongo sets no timeout on a unix socket's connect: it blocks until there is room.
            _connect(sock, host, None)
            return sock
        except BaseException:  # OSError, or a cancellation while parked
            sock.close()
            raise

    family = socket.AF_INET
    if socket.has_ipv6 and host != "localhost":
        family = socket.AF_UNSPEC
    err: OSError | None = None
    for af, socktype, proto, _name, sa in _resolve(host, port, family):
        sock = socket.socket(af, socktype | getattr(socket, "SOCK_CLOEXEC", 0), proto)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            timeout = _connect_timeout(options)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
            set_keepalive_times(sock)
            _connect(sock, sa, timeout)
            sock.settimeout(timeout)
            return sock
        except OSError as exc:
            err = exc
            sock.close()
        except BaseException:  # e.g. asyncio.CancelledError while parked: no fd left behind
            sock.close()
            raise
    if err is not None:
        raise err
    raise OSError("getaddrinfo failed")


def _handshake(ssl_sock: ssl.SSLSocket, timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            ssl_sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            write = False
        except ssl.SSLWantWriteError:
            write = True
        remaining = None if deadline is None else deadline - time.monotonic()
        if (remaining is not None and remaining <= 0) or not wait_fd(
            ssl_sock.fileno(), write=write, timeout=remaining, reason="tls handshake"
        ):
            raise TimeoutError("_ssl.c: The handshake operation timed out")


def green_configured_socket(
    address: tuple[str, int], options: Any, ssl_session_cache: list[Any] | None = None
) -> GreenSocket:
    """Green twin of PyMongo's ``_configured_socket`` (PyMongo 4.9-4.11; the socket part
    of ``_configured_socket_interface`` since 4.12): a connected, configured
    :class:`GreenSocket`, plain or TLS.

    Can raise ``socket.error``, ``ConnectionFailure`` or ``_CertificateError``,
    exactly as the original does for the same failure.
    """
    sock = green_create_connection(address, options)
    ssl_context = options._ssl_context
    if ssl_context is None:
        green = GreenSocket(sock)
        green.settimeout(options.socket_timeout)
        return green

    if not isinstance(ssl_context, ssl.SSLContext):
        sock.close()
        raise TypeError(
            "motorpatch cannot run a pyOpenSSL TLS context (PyMongo's 'ocsp' extra) in "
            "green code. Uninstall pyOpenSSL from this environment so PyMongo uses the "
            "standard library's ssl module, or run this client from a plain thread."
        )
    host = address[0]
    session = ssl_session_cache[0] if ssl_session_cache is not None else None
    timeout = sock.gettimeout()
    ssl_sock: ssl.SSLSocket | None = None
    try:
        ssl_sock = ssl_context.wrap_socket(
            sock,
            server_hostname=host if has_sni() else None,
            session=session,
            do_handshake_on_connect=False,
        )
        ssl_sock.setblocking(False)
        _handshake(ssl_sock, timeout)
    except _CertificateError:
        (ssl_sock or sock).close()  # wrap_socket detached sock: close what owns the fd
        raise
    except (OSError, *SSLErrors) as exc:
        (ssl_sock or sock).close()
        details = get_timeout_details(options)
        raise_connection_failure(address, exc, "SSL handshake failed: ", timeout_details=details)
    except BaseException:  # e.g. asyncio.CancelledError while parked in the handshake
        (ssl_sock or sock).close()
        raise
    if (
        ssl_context.verify_mode
        and not ssl_context.check_hostname
        and not options.tls_allow_invalid_hostnames
    ):
        try:
            ssl.match_hostname(ssl_sock.getpeercert(), hostname=host)  # type: ignore[attr-defined,arg-type]
        except _CertificateError:
            ssl_sock.close()
            raise
    if ssl_session_cache is not None and get_ssl_session is not None:
        new_session = get_ssl_session(ssl_sock)
        if new_session is not None:
            ssl_session_cache[0] = new_session
    green = GreenSocket(ssl_sock)
    green.settimeout(options.socket_timeout)
    return green


def green_configured_socket_interface(
    address: tuple[str, int], options: Any, ssl_session_cache: list[Any] | None = None
) -> Any:
    """Green twin of PyMongo's ``_configured_socket_interface`` (PyMongo 4.12-4.20):
    :func:`green_configured_socket` inside PyMongo's ``NetworkingInterface``."""
    assert HAS_NETWORKING_INTERFACE, "PyMongo < 4.12 has no NetworkingInterface"
    from pymongo.network_layer import NetworkingInterface

    return NetworkingInterface(
        green_configured_socket(address, options, ssl_session_cache)  # type: ignore[arg-type]
    )

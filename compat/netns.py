"""A private network namespace with only loopback, so the run cannot reach off the machine.

``enter_command(argv)`` prefixes a command with ``unshare -n`` (as root) or
``unshare -rn`` (unprivileged: a user namespace maps the caller to root in it).
Inside, ``bring_up_loopback()`` sets ``lo`` up with the ``SIOCSIFFLAGS`` ioctl
(no dependency on ``ip``) and ``verify_isolated()`` checks that ``lo`` is the
only interface the namespace has: no route leads anywhere but 127.0.0.1/::1.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct

__all__ = ["bring_up_loopback", "enter_command", "verify_isolated"]

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: name, flags, padding to 40 bytes


def enter_command(argv: list[str]) -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("compat needs util-linux 'unshare' to isolate the run's network")
    return [unshare, "-n", *argv] if os.geteuid() == 0 else [unshare, "-rn", *argv]


def bring_up_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, req))[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def verify_isolated() -> None:
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        raise RuntimeError(f"not in a loopback-only network namespace: interfaces {names}")

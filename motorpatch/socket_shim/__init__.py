"""The socket shim: the green socket and green connection set-up (DNS, connect, TLS).

Everything here parks the current greenlet in green code and behaves as the
standard library does elsewhere; see ``docs/architecture.md`` for why it is
built on loop readiness callbacks rather than one ``IOStream`` per connection.
"""

from motorpatch.socket_shim._pymongo import HAS_NETWORKING_INTERFACE
from motorpatch.socket_shim._wait import wait_fd
from motorpatch.socket_shim.connect import (
    green_configured_socket,
    green_configured_socket_interface,
    green_create_connection,
)
from motorpatch.socket_shim.green_socket import GreenSocket

__all__ = [
    "HAS_NETWORKING_INTERFACE",
    "GreenSocket",
    "green_configured_socket",
    "green_configured_socket_interface",
    "green_create_connection",
    "wait_fd",
]

"""PyMongo internals the shim tests call directly, wherever the installed release keeps them.

PyMongo 4.12 moved connection set-up to ``pool_shared`` and put a
``NetworkingInterface`` between a connection and its socket; 4.9-4.11 keep
the helpers in ``synchronous.pool`` and read through ``wait_for_read`` (4.9,
4.10) or ``network_layer.receive_data`` (4.11).
"""

from __future__ import annotations

import importlib
from typing import Any

import pymongo

VERSION = tuple(pymongo.version_tuple[:2])

if VERSION >= (4, 12):
    from pymongo import pool_shared as _setup

    def plain_configured_socket(address: Any, options: Any) -> Any:
        """PyMongo's own connect + TLS set-up; returns the socket."""
        return _setup._configured_socket_interface(address, options).conn

    _receive = importlib.import_module("pymongo.network_layer").receive_data
else:
    from pymongo.synchronous import pool as _setup  # type: ignore[no-redef]

    def plain_configured_socket(address: Any, options: Any) -> Any:
        """PyMongo's own connect + TLS set-up; returns the socket."""
        return _setup._configured_socket(address, options)  # type: ignore[attr-defined]

    if VERSION >= (4, 11):
        _receive = importlib.import_module("pymongo.network_layer").receive_data
    else:
        _receive = importlib.import_module("pymongo.synchronous.network")._receive_data_on_socket

create_connection = _setup._create_connection
CancellationContext = _setup._CancellationContext


def connection_holder(sock: Any) -> Any:
    """What a PyMongo ``Connection.conn`` holds for ``sock`` in this release."""
    if VERSION >= (4, 12):
        from pymongo.network_layer import NetworkingInterface

        return NetworkingInterface(sock)
    return sock


def receive_data(conn: Any, length: int, deadline: float | None) -> Any:
    """PyMongo's read loop for one message part (whatever this release calls it)."""
    return _receive(conn, length, deadline)


def pooled_socket(connection: Any) -> Any:
    """The socket of a pooled PyMongo ``Connection``."""
    return connection.conn.conn if VERSION >= (4, 12) else connection.conn

"""The PyMongo helpers the connect code reuses, wherever the installed release keeps them.

PyMongo 4.12 moved connection set-up into ``pymongo.pool_shared`` and put a
``NetworkingInterface`` between a ``Connection`` and its socket; PyMongo
4.9-4.11 keep the same helpers in ``pymongo.synchronous.pool`` and hold the
socket directly. Every other module imports them from here, so the version
split lives in one place.
"""

from __future__ import annotations

from typing import Any

import pymongo

__all__ = [
    "HAS_NETWORKING_INTERFACE",
    "SSLErrors",
    "get_ssl_session",
    "get_timeout_details",
    "has_sni",
    "raise_connection_failure",
    "set_keepalive_times",
]

HAS_NETWORKING_INTERFACE = pymongo.version_tuple[:2] >= (4, 12)

if HAS_NETWORKING_INTERFACE:  # PyMongo 4.12 and later
    from pymongo import pool_shared
    from pymongo.pool_shared import SSLErrors
    from pymongo.pool_shared import _raise_connection_failure as raise_connection_failure
    from pymongo.pool_shared import _set_keepalive_times as set_keepalive_times
    from pymongo.ssl_support import _has_sni

    try:
        from pymongo.helpers_shared import _get_timeout_details as get_timeout_details
    except ImportError:  # 4.12-4.1x keep it in pool_shared
        from pymongo.pool_shared import (  # type: ignore[attr-defined,no-redef]
            _get_timeout_details as get_timeout_details,
        )

    def has_sni() -> bool:
        return bool(_has_sni(True))

    # TLS session resumption arrived in PyMongo 4.18; older releases have no cache.
    get_ssl_session: Any = getattr(pool_shared, "_get_ssl_session", None)
else:  # PyMongo 4.9-4.11
    from pymongo.ssl_support import HAS_SNI, SSLError  # type: ignore[attr-defined]
    from pymongo.synchronous.pool import (  # type: ignore[attr-defined,no-redef]
        _get_timeout_details as get_timeout_details,
    )
    from pymongo.synchronous.pool import (  # type: ignore[attr-defined,no-redef]
        _raise_connection_failure as raise_connection_failure,
    )
    from pymongo.synchronous.pool import (  # type: ignore[attr-defined,no-redef]
        _set_keepalive_times as set_keepalive_times,
    )

    SSLErrors = (SSLError,)  # type: ignore[assignment]

    def has_sni() -> bool:
        return bool(HAS_SNI)

    get_ssl_session = None

"""django-mongodb-backend for a test server whose buildInfo has no ``versionArray``.

The backend checks the server version when it connects and reads
``buildInfo.versionArray``; nx-27017 (the suite's server) answers buildInfo
without it. This engine reports 7.0 then, and is otherwise the real backend.
"""

from typing import Any

from django_mongodb_backend import base


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]
    def get_database_version(self) -> tuple[int, ...]:
        info: dict[str, Any] = self.connection.server_info()
        return tuple(info.get("versionArray", (7, 0, 0)))[:3]

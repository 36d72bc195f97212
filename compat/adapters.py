"""Adapters completing nx-27017's replies where PyMongo's test set-up needs them.

Applied identically in every mode (plain, green), before any test runs. They
touch only PyMongo's *test* set-up (``test.ClientContext``), never PyMongo,
the socket layer or the server. Each adapter fills in a field that nx-27017
0.8 leaves out of a reply and that ``ClientContext._init_client`` indexes
unconditionally; a field the server *does* send is never overwritten.

- ``getCmdLineOpts``: nx answers ``{"ok": 1, "result": []}``; the suite reads
  ``argv`` (or ``parsed``) to learn whether auth/IPv6 are on. Completed with
  ``argv: ["nx-27017"]`` and ``parsed: {}``: no auth, no IPv6, as nx runs.
- ``getParameter "*"``: nx answers ``{"ok": 1, "result": []}``; the suite reads
  ``enableTestCommands``. Completed with ``enableTestCommands: 0`` because
  nx-27017 has no test commands: it acknowledges ``configureFailPoint`` but
  never fails a command, so tests that need fail points are skipped
  (``require_test_commands``/``require_failCommand_fail_point``) in both modes
  instead of failing in both for a reason that is nx's, not motorpatch's.
- ``buildinfo``: PyMongo's ``server_info()`` sends the lower-case command name,
  which nx does not know (it answers ``{"ok": 1}`` to unknown commands); the
  suite's ``Version.from_client`` then finds no ``version``. The adapter asks
  again as ``buildInfo``, which nx answers with ``version: "7.0.0"``.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["ADAPTERS", "apply"]

# attribute of test.ClientContext -> fields added to the reply stored there when missing
ADAPTERS: dict[str, dict[str, Any]] = {
    "cmd_line": {"argv": ["nx-27017"], "parsed": {}},
    "server_parameters": {"enableTestCommands": 0},
}

# What was completed, for the report: attribute -> the missing fields filled in.
applied: dict[str, list[str]] = {}


class _Completed:
    """A data descriptor storing a server reply with the missing fields filled in."""

    def __init__(self, name: str, defaults: dict[str, Any]) -> None:
        self.name = name
        self.defaults = defaults
        self.slot = f"_compat_{name}"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get(self.slot)

    def __set__(self, obj: Any, value: Any) -> None:
        if isinstance(value, dict):
            missing = {k: v for k, v in self.defaults.items() if k not in value}
            if missing:
                value = {**value, **missing}
                applied[self.name] = sorted(missing)
        obj.__dict__[self.slot] = value


def _version_from_client(cls: Any, client: Any) -> Any:
    info = client.server_info()
    if "versionArray" not in info and "version" not in info:
        info = client.admin.command("buildInfo")
        applied["Version.from_client"] = ["version (asked as buildInfo)"]
    if "versionArray" in info:
        return cls.from_version_array(info["versionArray"])
    return cls.from_string(info["version"])


def apply() -> bool:
    """Install the adapters on PyMongo's ``test.ClientContext`` (idempotent).

    Returns False, changing nothing, when PyMongo's ``test`` package is not loaded.
    """
    suite = sys.modules.get("test")
    if suite is None or not hasattr(suite, "ClientContext") or "test.version" not in sys.modules:
        return False
    cls = suite.ClientContext
    ctx = suite.client_context
    for name, defaults in ADAPTERS.items():
        if isinstance(cls.__dict__.get(name), _Completed):
            continue
        current = ctx.__dict__.pop(name, None)
        setattr(cls, name, _Completed(name, defaults))
        setattr(ctx, name, current)
    version_cls = sys.modules["test.version"].Version
    if not getattr(version_cls.from_client, "__compat__", False):
        version_cls.from_client = classmethod(_version_from_client)
        _version_from_client.__compat__ = True  # type: ignore[attr-defined]
    return True

"""Patches of ``pymongo.synchronous.topology``: server-selection waits.

Server selection waits on the topology's ``threading.Condition`` for the
monitor threads to report a suitable server. In green code the wait parks
the greenlet; the monitor threads' plain ``notify_all()`` wakes it
thread-safely (see :mod:`motorpatch.bridge._condition`).

- PyMongo 4.11+: the wait is ``_cond_wait`` (imported by name from
  ``pymongo.lock``), wrapped like the pool's.
- PyMongo 4.9-4.10: the topology calls ``self._condition.wait()`` directly
  (in ``_select_servers_loop`` and ``request_check_all``). Those two methods
  are wrapped; the first call gives the topology's condition the class
  :class:`_GreenAwareCondition` (a ``threading.Condition`` whose ``wait``
  parks in green code and is the original elsewhere, after the same
  blocking-call report as 4.11+). ``uninstall()`` gives every such condition
  its class back.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from motorpatch.bridge import green_cond_wait, is_installed
from motorpatch.patches._gates import cond_wait_wrapper, gate_loop
from motorpatch.patches._registry import Patch

__all__ = ["PATCHES"]

_MODULE = "pymongo.synchronous.topology"


class _GreenAwareCondition(threading.Condition):
    """A ``threading.Condition`` whose ``wait`` parks in green code."""

    def wait(self, timeout: float | None = None) -> bool:
        loop = gate_loop(detect_blocking=True)  # the gate's rule, for a method of our own
        if loop is None:
            return super().wait(timeout)
        return green_cond_wait(loop, self, timeout, "server selection")


_upgraded: weakref.WeakSet[threading.Condition] = weakref.WeakSet()


def _green_condition(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Give the topology's condition the green-aware class, then run the method (always)."""
    topology = instance if instance is not None else args[0]  # via the class __dict__
    condition = topology._condition
    if is_installed() and type(condition) is threading.Condition:  # a user's own class stays
        condition.__class__ = _GreenAwareCondition
        _upgraded.add(condition)
    return wrapped(*args, **kwargs)


def _restore_conditions() -> None:
    for condition in list(_upgraded):
        condition.__class__ = threading.Condition
    _upgraded.clear()


PATCHES = [
    Patch(
        _MODULE,
        "_cond_wait",
        wrapper=cond_wait_wrapper("server selection"),
        why="server selection waits park; monitor threads wake them thread-safely",
        since=(4, 11),
        accepts=("condition", "timeout"),
    ),
    *(
        Patch(
            _MODULE,
            f"Topology.{method}",
            wrapper=_green_condition,
            why="server selection waits park; monitor threads wake them thread-safely",
            until=(4, 10),
            undo=_restore_conditions,  # one group: runs once, after both are removed
        )
        for method in ("_select_servers_loop", "request_check_all")
    ),
]

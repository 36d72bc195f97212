"""Patches of PyMongo's back-off sleeps: ``time`` as seen by two modules.

``mongo_client`` (retry and overload back-off) and ``client_session``
(``with_transaction`` back-off) call ``time.sleep`` since PyMongo 4.17; earlier
releases have no such sleeps and these patches are skipped there
(``change_stream`` mentions ``time.sleep`` only in a docstring). Their module
attribute ``time`` is replaced by a proxy of the ``time`` module whose
``sleep`` parks the greenlet in green code and sleeps for real elsewhere;
every other attribute is the real module's. The global ``time.sleep`` is
never touched, so threads and user code are unaffected.

Deliberately not patched: ``auth_oidc`` sleeps while holding a
``threading.Lock``; parking there would let another greenlet on the same
thread block on that lock and freeze the loop
(docs/architecture.md#the-auth_oidc-sleep-is-not-patched).
"""

from __future__ import annotations

from typing import Any

import wrapt

from motorpatch.bridge import green_loop, sleep, yield_now
from motorpatch.patches._gates import gate_loop
from motorpatch.patches._registry import Patch

__all__ = ["PATCHES", "green_sleep"]


def green_sleep(seconds: float) -> None:
    """Park the current greenlet for ``seconds`` (green code only)."""
    loop = green_loop()
    assert loop is not None
    if seconds <= 0:
        yield_now(loop)
    else:
        sleep(loop, seconds, "sleep")


class _GreenTime(wrapt.BaseObjectProxy):  # type: ignore[misc,type-arg]
    """The ``time`` module, but ``sleep`` parks in green code."""

    def sleep(self, seconds: float) -> None:
        if gate_loop() is None:  # the gate's rule, for a proxy's method
            self.__wrapped__.sleep(seconds)
        else:
            green_sleep(seconds)


def _proxy(original: Any) -> Any:
    return _GreenTime(original)


PATCHES = [
    Patch(
        f"pymongo.synchronous.{module}",
        "time",
        proxy=_proxy,
        why=f"{module}: back-off sleeps park in green code",
        since=(4, 17),  # the first release with these back-off sleeps
        requires=("sleep", "monotonic"),
    )
    for module in ("mongo_client", "client_session")
]

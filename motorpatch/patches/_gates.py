"""The one gate of every green-only patch: green code takes the green branch, all else the original.

Every patched PyMongo wait decides the same way, in :func:`gate_loop`:

- motorpatch not installed (``uninstall()`` has run, yet another library's
  replacement still reaches one of our wrappers): PyMongo's original, nothing
  reported;
- outside green code: the blocking-call detector first, where the patch asks
  for it (every pool and server-selection wait, on every PyMongo release),
  then PyMongo's original;
- in green code: the patch's green branch, handed the running loop.

:func:`green_only` builds the wrapt wrapper around a green branch (the idea
of wrapt's ``patch_function_wrapper(..., enabled=)``: one rule decides when
a wrapper is active). It also serves the other way wrapt may call a wrapper
of a method: a caller that takes the raw function from the class
``__dict__`` and calls it with ``self`` first reaches the wrapper with
``instance=None`` and ``self`` in ``args``; the gate binds it back.
:func:`in_thread_pool` and :func:`cond_wait_wrapper` are the two green
branches more than one patch module shares.
"""

from __future__ import annotations

import functools
import threading
from asyncio import AbstractEventLoop
from collections.abc import Callable
from typing import Any

from motorpatch._detector import check_blocking
from motorpatch.bridge import green_cond_wait, green_loop, is_installed, park

__all__ = [
    "Args",
    "GreenBranch",
    "Kwargs",
    "Wrapper",
    "cond_wait_wrapper",
    "gate_loop",
    "green_only",
    "in_thread_pool",
]

# The positional and keyword arguments wrapt hands a wrapper (every green branch's last two).
Args = tuple[Any, ...]
Kwargs = dict[str, Any]
# wrapt's wrapper signature: (wrapped, instance, args, kwargs) -> result
Wrapper = Callable[[Callable[..., Any], Any, Args, Kwargs], Any]
# A green branch: the same, with the running loop first.
GreenBranch = Callable[[AbstractEventLoop, Callable[..., Any], Any, Args, Kwargs], Any]


def gate_loop(*, detect_blocking: bool = False) -> AbstractEventLoop | None:
    """The running loop if the caller is green code and motorpatch is installed, else None.

    With ``detect_blocking``, a call outside green code on a running loop's
    thread is reported first (while installed), as the detector's mode says.
    """
    if not is_installed():
        return None
    loop = green_loop()
    if loop is None and detect_blocking:
        check_blocking()
    return loop


def green_only(
    green: GreenBranch,
    *,
    detect_blocking: bool = False,
    method: bool = False,
    plain: Wrapper | None = None,
) -> Wrapper:
    """A wrapt wrapper: ``green`` in green code, the original elsewhere (see :func:`gate_loop`).

    :param detect_blocking: report a call on a running loop's thread outside
        green code before running the original.
    :param method: the target is a method; when wrapt passes ``instance=None``
        with ``self`` first in ``args`` (a call through the class ``__dict__``),
        ``self`` becomes the instance and ``wrapped`` is bound to it.
    :param plain: what runs instead of the original outside green code while
        installed (after the detector); it calls ``wrapped`` itself.
    """

    @functools.wraps(green)
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs) -> Any:
        loop = gate_loop(detect_blocking=detect_blocking)
        if loop is None:
            if plain is not None and is_installed():
                return plain(wrapped, instance, args, kwargs)
            return wrapped(*args, **kwargs)
        if method and instance is None and args:
            instance, args = args[0], args[1:]
            wrapped = wrapped.__get__(instance, type(instance))
        return green(loop, wrapped, instance, args, kwargs)

    return wrapper


def in_thread_pool(reason: str, *, method: bool = False) -> Wrapper:
    """A gate whose green branch runs the blocking call in the loop's default thread pool.

    The greenlet parks meanwhile (``reason`` for ``stats()``).
    """

    def run_in_pool(
        loop: AbstractEventLoop, wrapped: Callable[..., Any], _: Any, args: Args, kwargs: Kwargs
    ) -> Any:
        call = functools.partial(wrapped, *args, **kwargs)
        return park(loop.run_in_executor(None, call), reason)

    return green_only(run_in_pool, method=method)


def _condition_timeout(
    condition: threading.Condition, timeout: float | None
) -> tuple[threading.Condition, float | None]:
    return condition, timeout


def cond_wait_wrapper(
    reason: str, adjust: Callable[[float | None], float | None] | None = None
) -> Wrapper:
    """A gate for ``_cond_wait(condition, timeout)`` (PyMongo 4.11+, pool and topology).

    Green code parks on the condition; elsewhere the detector reports a call
    on a loop's thread. ``adjust``, if given, maps PyMongo's timeout to the
    one waited with.
    """

    def park_on_condition(
        loop: AbstractEventLoop, wrapped: Callable[..., Any], _: Any, args: Args, kwargs: Kwargs
    ) -> Any:
        condition, timeout = _condition_timeout(*args, **kwargs)
        if adjust is not None:
            timeout = adjust(timeout)
        return green_cond_wait(loop, condition, timeout, reason)

    return green_only(park_on_condition, detect_blocking=True)

"""The one registry of patches: what is patched (declarations), what is applied (state).

A :class:`Patch` is a frozen declaration: a module, a dotted attribute in
it, and a wrapt wrapper (a function wrapper, or an object-proxy factory),
declared next to the code it patches and collected in
:mod:`motorpatch.patches`. What applying one produced (the original, wrapt's
handle) lives apart, in one dict of applied patches, so the declarations can
be read, checked and listed without touching state.

Installing applies every entry with wrapt and keeps wrapt's handle, all or
nothing. Removing never stops half-way: each wrapper is taken out by its
handle with ``wrapt.unwrap_object`` (a wrapt wrapper another library put on
top stays in place, ours is spliced out below it), the result is judged with
``wrapt.is_wrapped_by`` and ``wrapt.unwrapped``, and every attribute that
could not be restored is returned as one sentence naming it, what is there
now and why (docs/architecture.md#uninstall-always-finishes).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import CodeType
from typing import Any

import pymongo
import wrapt

__all__ = ["Patch", "applied", "apply_all", "find_stale_references", "remove_all"]


@dataclass(frozen=True, eq=False)
class Patch:
    """One patched attribute: ``module.attr`` wrapped by ``wrapper`` or ``proxy``.

    The PyMongo releases a patch is for are ``since``..``until`` (inclusive,
    ``None`` for open-ended) within the tested range, ``motorpatch._versions.SUPPORTED``.
    """

    module: str
    attr: str
    why: str
    wrapper: Callable[..., Any] | None = None  # wrapt function wrapper
    proxy: Callable[[Any], Any] | None = None  # wrapt object-proxy factory
    since: tuple[int, int] | None = None  # first PyMongo (major, minor) that has the target
    until: tuple[int, int] | None = None  # last PyMongo (major, minor) that has the target
    # Clean-up after removal, for objects the patch changed on its own (run once per
    # removal however many entries of a group name it).
    undo: Callable[[], None] | None = None
    # Shape checked before patching: the parameters a replaced function may have (its
    # own must be a prefix of these), and attributes a proxied object must have.
    accepts: tuple[str, ...] | None = None
    requires: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return f"{self.module}.{self.attr}"

    def applies(self) -> bool:
        """Whether the installed PyMongo has the patched attribute (``since``..``until``)."""
        version = tuple(pymongo.version_tuple[:2])
        return (self.since is None or version >= self.since) and (
            self.until is None or version <= self.until
        )

    def resolve(self) -> Any:
        """The attribute as it is now (patched or not)."""
        obj: Any = importlib.import_module(self.module)
        for part in self.attr.split("."):
            obj = getattr(obj, part)
        return obj

    def shape_problem(self) -> str | None:
        """What differs from the shape motorpatch expects of the target, or None."""
        try:
            target = self.resolve()
        except (ImportError, AttributeError):
            return f"{self.target} does not exist"
        if self.accepts is not None:
            try:
                params = tuple(inspect.signature(target).parameters)
            except (TypeError, ValueError):
                return f"{self.target} is not a Python function"
            if params != self.accepts[: len(params)]:
                expected = ", ".join(self.accepts)
                return f"{self.target}({', '.join(params)}) no longer matches ({expected})"
        missing = [name for name in self.requires if not hasattr(target, name)]
        if missing:
            return f"{self.target} has no {', '.join(missing)}"
        return None


@dataclass(frozen=True)
class _Applied:
    original: Any  # the attribute before install()
    handle: Any  # what wrapt installed: the only key that removes exactly our wrapper


# Every applied patch, in order of application (dicts keep insertion order).
_applied: dict[Patch, _Applied] = {}


def applied() -> list[Patch]:
    """The patches applied now, in the order they were applied."""
    return list(_applied)


def _apply(patch: Patch) -> None:
    module = importlib.import_module(patch.module)
    original = patch.resolve()
    if patch.wrapper is not None:
        handle = wrapt.wrap_function_wrapper(module, patch.attr, patch.wrapper)
    else:
        assert patch.proxy is not None
        handle = wrapt.wrap_object(module, patch.attr, patch.proxy)  # type: ignore[arg-type]
    _applied[patch] = _Applied(original, handle)


def apply_all(patches: Iterable[Patch]) -> None:
    """Apply every patch that applies to this PyMongo, or none: a failure undoes the rest."""
    try:
        for patch in patches:
            if patch.applies() and patch not in _applied:
                _apply(patch)
    except BaseException:
        remove_all()
        raise


def _describe(value: Any) -> str:
    """What replaced an attribute, by where it was defined (``functools.wraps`` copies names)."""
    code = getattr(value, "__code__", None)
    if isinstance(code, CodeType):
        return f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"
    return f"a {type(value).__name__} object"


def _remove(patch: Patch, state: _Applied) -> str | None:
    """Take out our wrapper; None if the attribute is the original again, else why not."""
    module = importlib.import_module(patch.module)
    try:
        holds = _describe(patch.resolve())
    except Exception as exc:
        holds = f"something that cannot be read ({type(exc).__name__}: {exc})"
    kept = "motorpatch left that value in place"
    try:
        removed = wrapt.unwrap_object(module, patch.attr, state.handle, missing_ok=True)
        if removed is None:  # ours is nowhere in what the attribute holds now
            return (
                f"{patch.target} was replaced after install() by {holds}, which is not a "
                f"wrapt wrapper around motorpatch's; {kept}"
            )
        current = patch.resolve()
        if wrapt.is_wrapped_by(current, state.handle) or wrapt.unwrapped(
            current
        ) is not wrapt.unwrapped(state.original):
            return f"{patch.target} holds {_describe(current)}, not PyMongo's original; {kept}"
    except wrapt.WrapperNotOutermostError:
        return (
            f"{patch.target} holds {holds}, which calls motorpatch's wrapper but is not a wrapt "
            f"wrapper, so motorpatch's cannot be taken out from under it; {kept}"
        )
    except Exception as exc:  # a replacement that raises when wrapt follows its chain
        return f"{patch.target} holds {holds}; removing motorpatch's wrapper raised " + (
            f"{type(exc).__name__}: {exc}; {kept}"
        )
    return None


def remove_all() -> list[str]:
    """Remove every applied patch, last applied first; return what could not be restored.

    Never stops half-way: every patch is forgotten and every ``undo`` runs,
    whatever one of them raises; the problems come back as sentences.
    """
    problems: list[str] = []
    undos: list[Callable[[], None]] = []
    for patch, state in reversed(list(_applied.items())):
        del _applied[patch]
        problem = _remove(patch, state)
        if problem is not None:
            problems.append(problem)
        if patch.undo is not None and patch.undo not in undos:
            undos.append(patch.undo)
    for undo in undos:
        try:
            undo()
        except Exception as exc:
            name = getattr(undo, "__qualname__", repr(undo))
            problems.append(f"the clean-up {name} failed ({type(exc).__name__}: {exc})")
    return problems


def find_stale_references(patches: Iterable[Patch]) -> list[str]:
    """Names in loaded ``pymongo`` modules still bound to an original we patched elsewhere.

    PyMongo imports some functions by name into the modules that use them; a
    module we did not patch would keep calling the blocking original.
    """
    originals: dict[int, tuple[Patch, Any]] = {}
    for p in patches:
        state = _applied.get(p)
        if state is not None and p.wrapper is not None and callable(state.original):
            originals[id(state.original)] = (p, state.original)
    stale = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("pymongo") or "asynchronous" in name or module is None:
            continue
        for attr, value in list(vars(module).items()):
            found = originals.get(id(value))
            if found is None or value is not found[1]:
                continue
            if name == getattr(value, "__module__", None):
                continue  # the defining module itself
            stale.append(f"{name}.{attr} (patched at {found[0].target})")
    return stale

"""The one registry of patches: what is patched, its original, and how it is undone.

Each entry names a module, a dotted attribute in it, and a wrapt wrapper (a
function wrapper, or an object-proxy factory). Installing applies every
entry with wrapt and keeps wrapt's handle; uninstalling removes exactly that
wrapper with ``wrapt.unwrap_object`` (a wrapper another library put on top
stays in place) and checks that the attribute is the identical original.
Entries are declared next to the code they patch, one module per PyMongo
area, and collected in :mod:`motorpatch.patches`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymongo
import wrapt

__all__ = ["Patch", "apply_all", "find_stale_references", "remove_all"]

# The PyMongo releases each patched internal was read and tested against.
CHECKED_ON = "PyMongo 4.9-4.20"


@dataclass
class Patch:
    """One patched attribute: ``module.attr`` wrapped by ``wrapper`` or ``proxy``."""

    module: str
    attr: str
    why: str
    wrapper: Callable[..., Any] | None = None  # wrapt function wrapper
    proxy: Callable[[Any], Any] | None = None  # wrapt object-proxy factory
    checked_on: str = CHECKED_ON
    since: tuple[int, int] | None = None  # first PyMongo (major, minor) that has the target
    until: tuple[int, int] | None = None  # last PyMongo (major, minor) that has the target
    undo: Callable[[], None] | None = None  # extra clean-up after removal (objects changed)
    # Shape checked before patching: the parameters a replaced function may have (its
    # own must be a prefix of these), and attributes a proxied object must have.
    accepts: tuple[str, ...] | None = None
    requires: tuple[str, ...] = ()
    original: Any = field(default=None, repr=False)
    handle: Any = field(default=None, repr=False)

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

    def apply(self) -> None:
        module = importlib.import_module(self.module)
        self.original = self.resolve()
        if self.wrapper is not None:
            self.handle = wrapt.wrap_function_wrapper(module, self.attr, self.wrapper)
        else:
            assert self.proxy is not None
            self.handle = wrapt.wrap_object(module, self.attr, self.proxy)  # type: ignore[arg-type]

    def remove(self) -> None:
        module = importlib.import_module(self.module)
        wrapt.unwrap_object(module, self.attr, self.handle)
        # Alone, the attribute is the identical original again. Under another
        # library's wrapper, ours is spliced out and theirs wraps the original.
        current = self.resolve()
        chain = list(wrapt.wrapper_chain(current))
        innermost = list(wrapt.wrapper_chain(self.original))[-1]
        if any(link is self.handle for link in chain) or chain[-1] is not innermost:
            raise RuntimeError(f"motorpatch could not restore {self.target} to its original")
        self.handle = None
        self.original = None
        if self.undo is not None:
            self.undo()


def apply_all(patches: list[Patch]) -> None:
    """Apply every patch, or none: a failure part-way undoes what was applied."""
    applied: list[Patch] = []
    try:
        for patch in patches:
            if not patch.applies():
                continue
            patch.apply()
            applied.append(patch)
    except BaseException:
        remove_all(applied)
        raise


def remove_all(patches: list[Patch]) -> None:
    """Remove patches in reverse order of application; one that fails does not stop the rest."""
    failed: list[RuntimeError] = []
    for patch in reversed(patches):
        if patch.handle is not None:
            try:
                patch.remove()
            except RuntimeError as exc:
                failed.append(exc)
    if failed:
        raise failed[0]


def find_stale_references(patches: list[Patch]) -> list[str]:
    """Names in loaded ``pymongo`` modules still bound to an original we patched elsewhere.

    PyMongo imports some functions by name into the modules that use them; a
    module we did not patch would keep calling the blocking original.
    """
    originals = {
        id(p.original): p for p in patches if p.wrapper is not None and callable(p.original)
    }
    stale = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("pymongo") or "asynchronous" in name or module is None:
            continue
        for attr, value in list(vars(module).items()):
            patch = originals.get(id(value))
            if patch is None or value is not patch.original:
                continue
            if name == getattr(value, "__module__", None):
                continue  # the defining module itself
            stale.append(f"{name}.{attr} (patched at {patch.target})")
    return stale

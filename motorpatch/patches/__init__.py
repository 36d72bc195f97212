"""Every patch motorpatch applies to PyMongo, collected in one list.

One module per PyMongo area declares its entries (:mod:`.pool`,
:mod:`.topology`, :mod:`.network`, :mod:`.sleep`, :mod:`.executor`,
:mod:`.dns`);
:data:`REGISTRY` is the whole set that ``install()`` applies and
``uninstall()`` removes. Each entry names the PyMongo releases that have its
target (``since``/``until``) and the shape ``install()`` checks first.

Imported by ``install()``, not by ``import motorpatch``: it imports PyMongo.
"""

from __future__ import annotations

from motorpatch.patches import dns, executor, network, pool, sleep, topology
from motorpatch.patches._registry import (
    Patch,
    applied,
    apply_all,
    find_stale_references,
    remove_all,
)

__all__ = ["REGISTRY", "Patch", "applied", "apply_all", "find_stale_references", "remove_all"]

REGISTRY: list[Patch] = [
    *pool.PATCHES,
    *topology.PATCHES,
    *network.PATCHES,
    *sleep.PATCHES,
    *executor.PATCHES,
    *dns.PATCHES,
]

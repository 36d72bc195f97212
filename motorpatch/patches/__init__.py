"""Every patch motorpatch applies to PyMongo, collected in one list.

One module per PyMongo area declares its entries (:mod:`.pool`,
:mod:`.topology`, :mod:`.sleep`, :mod:`.executor`); :data:`REGISTRY` is the whole set that
``install()`` applies and ``uninstall()`` removes.
"""

from __future__ import annotations

from motorpatch.patches import executor, pool, sleep, topology
from motorpatch.patches._registry import Patch

__all__ = ["REGISTRY", "Patch"]

REGISTRY: list[Patch] = [*pool.PATCHES, *topology.PATCHES, *sleep.PATCHES, *executor.PATCHES]

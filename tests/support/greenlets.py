"""Find greenlets that are still alive, for leak and pool checks."""

from __future__ import annotations

import gc

import greenlet


def live_greenlets() -> list[greenlet.greenlet]:
    """Every greenlet not dead and not a thread's main greenlet, after a full collection."""
    gc.collect()
    live = []
    for obj in gc.get_objects():
        # type(), not isinstance(): isinstance also asks obj.__class__, which lazy proxies
        # answer by loading their target (Django's unconfigured settings then raise).
        if not issubclass(type(obj), greenlet.greenlet):
            continue
        try:  # weak proxies among the objects raise ReferenceError when their referent is gone
            if not obj.dead and obj.parent is not None:
                live.append(obj)  # a main greenlet (of any thread) has no parent
        except ReferenceError:
            continue
    return live

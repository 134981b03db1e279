"""Freeze the heap an actor process inherits, the moment thespian forks it.

Why: on the processes base every actor process is a fork of its parent actor and shares the
parent's memory copy-on-write. Any write to an inherited page copies it into the child, and
CPython's cyclic garbage collector writes to every object it visits (the GC header it keeps its
lists in). A full collection in a child therefore copies every page holding a tracked object
the parent left behind: the actor state, messages and client objects the parent allocated
after the launcher froze the preloaded modules (`system.launcher.preload_for_fork`).

`gc.freeze()` as the child's first act moves everything inherited into the permanent
generation in O(1) (it splices lists, it does not visit objects), so the collector never walks
those objects again in that process. They are still freed normally when their reference count
drops. What the child will not free is inherited garbage held in reference cycles (the parent
actor's own state, which the child never uses): freeing it would copy its pages first, so
leaving it shared is the cheaper choice.

Measured (10 bots on the processes base, 1,000 msg/s offered for 15 s, PSS by role): fleet
413 -> 395 MB loaded, backends 162 -> 155 MB, bots 103 -> 96.5 MB; idle unchanged (350).
"""
from __future__ import annotations

import functools
import gc

from system import procmains

MARKER = "__tgfleet_frozen_start__"  # on thespian's process mains once they freeze first


def frozen_start(fn):
    """FN, run after freezing everything this (new) process inherited from its parent."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        gc.freeze()
        return fn(*args, **kwargs)
    return wrapper


def install() -> None:
    """Every process thespian's multiproc bases fork (admin, logger, each actor) starts by
    freezing its inherited heap."""
    procmains.wrap_process_mains(frozen_start, MARKER)

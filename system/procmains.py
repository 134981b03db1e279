"""thespian's process main functions, and wrapping them once.

Every process a multiproc base starts (admin, logger, each actor) runs one of these functions of
`thespian.system.multiprocCommon` as its main. thespian looks them up in its module when it
starts a process, and every process is a fork of one that patched the module, so replacing
them there once covers the whole system. Used by `system.framestack` (run the loop padded) and
`system.forkheap` (freeze the inherited heap first).
"""
from __future__ import annotations

PROCESS_MAINS = ("startChild", "startAdmin", "startupASLogger")


def wrap_process_mains(decorate, marker: str) -> None:
    """Replace each process main `fn` by `decorate(fn)`, once: a function already carrying
    the attribute MARKER is left alone, and the replacement gets it."""
    from thespian.system import multiprocCommon as mpc
    for name in PROCESS_MAINS:
        fn = getattr(mpc, name, None)
        if fn is not None and not getattr(fn, marker, False):
            wrapped = decorate(fn)
            setattr(wrapped, marker, True)
            setattr(mpc, name, wrapped)

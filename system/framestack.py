"""Keep long-lived loops off a frame-stack chunk boundary (CPython 3.11).

Why: CPython 3.11 keeps each thread's Python frames in 16 KiB "data stack" chunks and frees a
chunk the moment the first frame in it returns. A loop whose call depth goes back and forth
across a chunk boundary therefore maps and unmaps 16 KiB (and faults in a fresh zeroed page)
on every pass. Where the boundary falls depends on how deep the stack already was, and an
actor process forked by thespian starts inside its parent's stack: strace of an idle per-bot
supervisor showed 2,140 mmap/munmap pairs in 10 s (`_PyThreadState_BumpFramePointerSlow`),
about 50 per pass of its loop (43 passes); padded, it made none, and its idle CPU went from
3.5 to 1.4 ms per second.

The fix: run the loop inside one frame that is too big for what is left of the current chunk,
so CPython starts a new, larger chunk for it (chunks double from 16 KiB until the frame fits),
and everything the loop calls then has the rest of that chunk: PAD_WORDS words (about 288 KiB)
give a 512 KiB chunk with about 220 KiB left for the frames the loop calls. The padding is
virtual memory only: CPython never writes a frame's unused value-stack slots, so the pages stay
untouched and cost no RSS. It is a plain function call, so semantics are unchanged.
"""
from __future__ import annotations

import functools

from system import procmains

PAD_WORDS = 36_000
MARKER = "__tgfleet_padded__"      # on thespian's process mains once they run padded


def _padded_call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


_padded_call.__code__ = _padded_call.__code__.replace(
    co_stacksize=_padded_call.__code__.co_stacksize + PAD_WORDS)


def padded(fn):
    """FN, called from a frame that starts its own large stack chunk (for a thread's or a
    process's main function)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return _padded_call(fn, *args, **kwargs)
    return wrapper


def pad_thespian_processes() -> None:
    """Every process thespian's multiproc bases start (admin, logger, each actor) runs its
    loop padded."""
    procmains.wrap_process_mains(padded, MARKER)

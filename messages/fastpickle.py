"""Faster pickling for the frozen, slotted message dataclasses (same bytes on the wire).

Every message that crosses a process on the processes base is pickled (thespian's transport,
the bot<->backend lanes). For a frozen dataclass with slots, Python 3.11 pickles through
`dataclasses._dataclass_getstate/_setstate`, which call `dataclasses.fields(self)` on every
dump and every load: a tuple built from a generator each time. Two costs follow:
- CPU: an `UpdateBatch` of 8 messages took 57 us per dump+load, 35 us with the field names
  looked up once per class (this module); one message 14.8 against 8.7 us;
- memory: those throw-away tuples are created at one size and resized, so each one freed
  lands on a free list of its final size that is never drawn from again; actor processes are
  forked with their heap frozen and never run a full collection, which is what would empty
  the free lists. A bot filled them by ~120 KB a minute, up to ~1.5-1.8 MB (the tenth
  session's memory trace, bench/RESULTS.md).

The state stays what the stock functions produce and accept (a list of field values in field
order), so either side may use either implementation.
"""
from __future__ import annotations

import dataclasses


def _fast(cls):
    names = tuple(f.name for f in dataclasses.fields(cls))

    def __getstate__(self, _names=names, _get=getattr):
        return [_get(self, name) for name in _names]

    def __setstate__(self, state, _names=names, _set=object.__setattr__):
        for name, value in zip(_names, state):
            _set(self, name, value)

    cls.__getstate__ = __getstate__
    cls.__setstate__ = __setstate__


def install(namespace: dict) -> int:
    """Give every frozen slotted dataclass defined in this module namespace the cached-names
    pickling; returns how many. Call at the end of each `messages` module."""
    module = namespace.get("__name__")
    count = 0
    for obj in list(namespace.values()):
        if isinstance(obj, type) and obj.__module__ == module and \
                dataclasses.is_dataclass(obj) and \
                obj.__dict__.get("__getstate__") is dataclasses._dataclass_getstate:
            _fast(obj)
            count += 1
    return count

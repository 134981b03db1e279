"""Bounded LRU set for dedup keys (update ids, forwarded message ids).

Why: backends may deliver the same update twice (reconnects, GetDifference after a gap), and a
long-running fleet must not remember every key it ever saw. An OrderedDict gives O(1) lookup,
refresh and eviction of the oldest key, so memory is fixed at `max_size` keys no matter how long
the process runs; `stats()` shows whether the size is right (many evictions with hits = too
small).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Hashable


class BoundedLRU:
    """A set of at most `max_size` keys; `seen(key)` is the one operation dedup needs."""

    __slots__ = ("max_size", "_keys", "hits", "misses", "evictions")

    def __init__(self, max_size: int) -> None:
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
            raise ValueError(f"BoundedLRU max_size must be an int >= 1, got {max_size!r}")
        self.max_size = max_size
        self._keys: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def seen(self, key: Hashable) -> bool:
        """True if `key` was already present (a dedup hit; the key is refreshed as most recent).
        Otherwise insert it, evicting the least recently seen key past `max_size`, and return
        False."""
        keys = self._keys
        if key in keys:
            keys.move_to_end(key)
            self.hits += 1
            return True
        keys[key] = None
        self.misses += 1
        if len(keys) > self.max_size:
            keys.popitem(last=False)
            self.evictions += 1
        return False

    def load(self, keys) -> None:
        """Insert KEYS (oldest first) as already seen, without counting hits or misses: a
        restarted bot warms its LRU with what its previous incarnations recorded."""
        for key in keys:
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self.max_size:
            self._keys.popitem(last=False)
            self.evictions += 1

    def __contains__(self, key: Hashable) -> bool:
        """Membership test that neither inserts, refreshes nor counts."""
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._keys.clear()

    def stats(self) -> dict:
        return {
            "size": len(self._keys),
            "max_size": self.max_size,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }

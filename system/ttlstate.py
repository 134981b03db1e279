"""Per-key (usually per-user) conversation state that forgets itself.

Why: handlers keep small dicts per user (a wizard step, a pending question). Without expiry
those dicts accumulate for every user who ever wrote once. Here each entry expires `ttl_seconds`
after it was last touched (read or written), `cleanup()` removes expired entries in bulk (called
periodically by the pipeline owner), and `max_entries` caps memory even between cleanups by
evicting the least recently touched entry.

Entries live in an OrderedDict ordered by last touch, so eviction of the least recently touched
entry is O(1); cleanup is one linear pass, run every few minutes. `get` returns a deep copy and `set`
stores one: a handler can never mutate stored state by accident, or share it with an action
that crosses a process boundary.
"""
from __future__ import annotations

import copy
import time
from collections import OrderedDict
from typing import Callable, Hashable, Optional


class TTLState:
    __slots__ = ("ttl_seconds", "max_entries", "_clock", "_entries", "expired", "evictions")

    def __init__(self, ttl_seconds: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl_seconds > 0:
            raise ValueError(f"TTLState ttl_seconds must be > 0, got {ttl_seconds!r}")
        if not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 1:
            raise ValueError(f"TTLState max_entries must be an int >= 1, got {max_entries!r}")
        self.ttl_seconds = float(ttl_seconds)
        self.max_entries = max_entries
        self._clock = clock
        # key -> [last_touch, data]; order = least recently touched first
        self._entries: OrderedDict = OrderedDict()
        self.expired = 0      # removed because their TTL passed (total)
        self.evictions = 0    # removed because max_entries was reached (total)

    def _now(self, now: Optional[float]) -> float:
        return self._clock() if now is None else now

    def _live(self, key: Hashable, now: float):
        """The entry for key if present and not expired (an expired one is removed)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry[0] >= self.ttl_seconds:
            del self._entries[key]
            self.expired += 1
            return None
        return entry

    def _store(self, key: Hashable, data: dict, now: float) -> None:
        entries = self._entries
        entries[key] = [now, data]
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
            self.evictions += 1

    def get(self, key: Hashable, now: Optional[float] = None) -> dict:
        """A fresh copy of key's state; {} if absent or expired. Reading counts as a touch."""
        now = self._now(now)
        entry = self._live(key, now)
        if entry is None:
            return {}
        entry[0] = now
        self._entries.move_to_end(key)
        return copy.deepcopy(entry[1])

    def set(self, key: Hashable, value: dict, now: Optional[float] = None) -> None:
        """Replace key's state with a copy of `value`."""
        if not isinstance(value, dict):
            raise TypeError(f"TTLState values must be dicts, got {type(value).__name__}")
        self._store(key, copy.deepcopy(value), self._now(now))

    def update(self, key: Hashable, now: Optional[float] = None, **fields) -> dict:
        """Merge `fields` into key's (live) state, creating it if needed; returns a copy."""
        now = self._now(now)
        entry = self._live(key, now)
        data = entry[1] if entry is not None else {}
        data.update(copy.deepcopy(fields))
        self._store(key, data, now)
        return copy.deepcopy(data)

    def delete(self, key: Hashable) -> bool:
        """Forget key; True if it was present."""
        return self._entries.pop(key, None) is not None

    def cleanup(self, now: Optional[float] = None) -> int:
        """Remove every expired entry; returns how many were removed."""
        now = self._now(now)
        ttl = self.ttl_seconds
        # A full scan rather than stopping at the first fresh entry: callers may pass explicit
        # `now` values out of order, so touch order need not match timestamp order.
        stale = [key for key, entry in self._entries.items() if now - entry[0] >= ttl]
        for key in stale:
            del self._entries[key]
        self.expired += len(stale)
        return len(stale)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        """Present (possibly expired but not yet cleaned up); does not touch."""
        return key in self._entries

    def stats(self) -> dict:
        return {
            "size": len(self._entries),
            "max_entries": self.max_entries,
            "ttl_seconds": self.ttl_seconds,
            "expired": self.expired,
            "evictions": self.evictions,
        }

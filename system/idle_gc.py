"""Young garbage collections while the in-process runner is idle, not inside a message's path.

Why: CPython starts a young collection when the net count of new container objects passes 700,
in whichever thread allocated the last one. In an in-process fleet that is nearly always a
backend's loop thread in the middle of an update, or the runner in the middle of a delivery:
the collection runs inside some message's path. And it is not small: every Telethon client
keeps ~100 objects waiting between two updates (its update loop's `wait_for`, a queue getter,
a timer handle, futures), all young again after each update. With 50 bots at one message a
second each, a young collection walked ~5,000 of them and took 1-3 ms, about twice a second,
most on loop threads: about one light-load message in 30 carried one (bench/RESULTS.md,
nineteenth session).

The runner calls `IdleCollector.before_sleep()` each time it is about to sleep in select():
once `young_at` new objects are waiting it collects the young generation there and then, and
the middle generation instead when the next young collection would have done that itself. So
collections mostly happen when the runner has nothing to deliver, and as they run more often
each walks fewer objects. The interpreter's own thresholds stay as they are: under sustained
load, when the runner is seldom idle, collections happen as before (`min_interval_s` keeps a
runner that idles between every two deliveries from collecting more often than that).

Full collections: CPython decides on one only inside its own automatic collections, which
become rare here. Cycles that die in the old generation would then wait for the next one
indefinitely in a quiet fleet, so once the middle generation has been collected more than
threshold2 times and no full collection has run for `full_every_s` (10 minutes), the runner
runs one at an idle moment. It is the longest pause (tens of ms with a large fleet; the
start-up objects are frozen, system/launcher.py settle_heap), hence so seldom.

On the processes base there is no runner; each actor process collects as CPython does.
"""
from __future__ import annotations

import gc
import time

DEFAULT_YOUNG_AT = 150        # new objects that make an idle moment worth a young collection
MIN_INTERVAL_S = 0.01
FULL_EVERY_S = 600.0


class IdleCollector:
    """Collects the young generation (the middle one when due, seldom everything) at the
    runner's idle moments."""

    def __init__(self, young_at: int = DEFAULT_YOUNG_AT, min_interval_s: float = MIN_INTERVAL_S,
                 full_every_s: float = FULL_EVERY_S):
        if young_at < 0:
            raise ValueError(f"young_at must be >= 0 (0 = off), got {young_at}")
        self.young_at = young_at
        self.min_interval_s = min_interval_s
        # CPython collects the middle generation at the first young collection that finds more
        # than threshold1 young ones since the last middle one: do it here one earlier.
        self.middle_after = max(1, gc.get_threshold()[1])
        self.old_after = gc.get_threshold()[2]
        self.full_every_s = full_every_s
        self._next_ok = 0.0
        self._full_seen = self._full_count()
        self._next_full = time.monotonic() + full_every_s
        self.stats = {"young": 0, "middle": 0, "full": 0, "seconds": 0.0}

    @staticmethod
    def _full_count() -> int:
        return gc.get_stats()[2]["collections"]

    def _full_due(self, old: int, now: float) -> bool:
        """More than threshold2 middle collections since the last full one, and none (ours or
        CPython's) for full_every_s."""
        if old <= self.old_after or now < self._next_full:
            return False
        seen = self._full_count()
        if seen != self._full_seen:          # CPython ran one since we last looked
            self._full_seen = seen
            self._next_full = now + self.full_every_s
            return False
        return True

    def before_sleep(self) -> int | None:
        """Collect if enough is waiting; returns the generation collected, or None."""
        if not self.young_at or not gc.isenabled():
            return None
        young, middle, old = gc.get_count()
        if young < self.young_at:
            return None
        now = time.monotonic()
        if now < self._next_ok:
            return None
        if self._full_due(old, now):
            generation = 2
        else:
            generation = 1 if middle >= self.middle_after else 0
        gc.collect(generation)
        done = time.monotonic()
        self._next_ok = done + self.min_interval_s
        if generation == 2:
            self._full_seen = self._full_count()
            self._next_full = done + self.full_every_s
        self.stats[("young", "middle", "full")[generation]] += 1
        self.stats["seconds"] += done - now
        return generation

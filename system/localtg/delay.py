"""Simulated network delay: a per-connection, per-direction timed queue.

Why: tests and benchmarks need a real round-trip time (a client that waits for each reply
before the next request must be capped at ~1/RTT), but the delay must not serialize a
connection: many packets can be in flight. So each packet is stamped with a due time when
it enters the line and released, in order, when that time comes; nothing sleeps before
handling a request. Jitter varies the stamp but never reorders packets (a due time is never
earlier than the previous packet's).
"""
from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import Any, Callable


class DelayLine:
    """Releases items to `sink` after `delay_fn()` -> (delay_s, jitter_s), in FIFO order."""

    __slots__ = ("_loop", "_sink", "_delay_fn", "_q", "_timer", "_last_due")

    def __init__(self, sink: Callable[[Any], None], delay_fn: Callable[[], tuple[float, float]]):
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        self._delay_fn = delay_fn
        self._q: deque = deque()
        self._timer = None
        self._last_due = 0.0

    def put(self, item) -> None:
        delay, jitter = self._delay_fn()
        if not self._q and delay <= 0 and jitter <= 0:
            self._sink(item)
            return
        now = self._loop.time()
        due = now + max(0.0, delay + (random.uniform(-jitter, jitter) if jitter > 0 else 0.0))
        if due < self._last_due:
            due = self._last_due
        self._last_due = due
        self._q.append((due, item))
        if self._timer is None:
            self._timer = self._loop.call_at(due, self._drain)

    def _drain(self) -> None:
        self._timer = None
        now = self._loop.time() + 0.0005
        q = self._q
        while q and q[0][0] <= now:
            self._sink(q.popleft()[1])
        if q:
            self._timer = self._loop.call_at(q[0][0], self._drain)

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._q.clear()

    def __len__(self) -> int:
        return len(self._q)

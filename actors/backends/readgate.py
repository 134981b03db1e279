"""ReadGate: stop reading from Telegram while the client library is behind on its updates.

Why: Telethon and Pyrogram read their connection as fast as the loop lets them and queue every
update they decode (Telethon's `_updates_queue`, Pyrogram's dispatcher queue), with no bound.
When a backend gets more updates than its process can handle, that queue is where they wait:
with 10 bots on the processes base offered 4,000 msg/s for 15 s, Telethon's queue reached 4,200
entries per backend and the backends' PSS went from 139 to 339 MB (387 MB after the crowd
stopped). Telegram keeps undelivered updates on its side anyway; a client that does not read
leaves them in TCP and the server's buffers, which is where a backlog belongs.

Thresholds (the defaults live in the backend config, `update_backlog_high` / `_low`): with the
gate below woken by the queue, 128 / 32 keeps those backends at 174 MB (1024 / 256: 220 MB)
and cost no throughput in the quick benchmarks (bench/RESULTS.md, sixth session). Small
thresholds were only expensive with the first, polling version (see How).

How: the library's update queue is replaced by a `GateQueue` (same asyncio.Queue, it only tells
the gate when it was taken from), and its connection class is wrapped so that each `recv()`
first awaits `ReadGate.wait()`. While the queue holds more than `high` updates, the read waits
for the consumer to bring it down to `low`. Nothing polls: a paused read is woken by the
`get()` that reaches `low` (an earlier version polled every 2 ms; with 50 backends on the one
core of the in-process base those wake-ups halved the fleet's throughput).

Why it cannot deadlock: RPC answers arrive on the same connection as updates. If the update
loop itself is waiting for an answer (Telethon's GetDifference after a gap), the queue stops
shrinking; after `stall_s` without a single `get()` the gate lets the read through. So a
paused read only ever waits for a consumer that is actually consuming.
"""
from __future__ import annotations

import asyncio
import time

STALL_S = 0.05


class ReadGate:
    """Awaited before every read; used on the library's loop thread only."""

    def __init__(self, high: int, low: int, stall_s: float = STALL_S):
        """`high` and `low` come from the backend's config (`update_backlog_high` / `_low`,
        defaults in actors/backends/base.py DEFAULTS)."""
        if not 0 <= low < high:
            raise ValueError(f"read gate: need 0 <= low < high, got low={low} high={high}")
        self.high, self.low, self.stall_s = high, low, stall_s
        self.queue: "GateQueue | None" = None
        self._event: asyncio.Event | None = None   # set while a paused read may go on
        self._takes = 0                            # get()s seen, to tell progress from a stall
        self.pauses = 0            # reads that waited
        self.stall_releases = 0    # waits ended because the queue stopped shrinking
        self.paused_s = 0.0        # total time reads waited
        self.max_depth = 0

    def make_queue(self, track_taken: bool = False) -> "GateQueue":
        """The library's new update queue (call on the loop thread, before it connects);
        TRACK_TAKEN: remember what each consumer task took last (`TrackingGateQueue`)."""
        self.queue = TrackingGateQueue(self) if track_taken else GateQueue(self)
        return self.queue

    def depth(self) -> int:
        return self.queue.qsize() if self.queue is not None else 0

    def _taken(self, depth: int) -> None:
        self._takes += 1
        event = self._event
        if event is not None and depth <= self.low:
            event.set()

    async def wait(self) -> None:
        depth = self.depth()
        if depth > self.max_depth:
            self.max_depth = depth
        if depth <= self.high:
            return
        self.pauses += 1
        start = time.monotonic()
        self._event = event = asyncio.Event()
        try:
            while True:
                takes = self._takes
                try:
                    await asyncio.wait_for(event.wait(), self.stall_s)
                    return
                except asyncio.TimeoutError:
                    if self.depth() <= self.low:
                        return
                    if self._takes == takes:      # nothing consumed for stall_s: read anyway
                        self.stall_releases += 1
                        return
        finally:
            self._event = None
            self.paused_s += time.monotonic() - start

    def stats(self) -> dict:
        return {"read_pauses": self.pauses, "read_stall_releases": self.stall_releases,
                "read_paused_s": round(self.paused_s, 6), "update_backlog_max": self.max_depth}


class GateQueue(asyncio.Queue):
    """The library's update queue, unchanged except that every take tells the gate."""

    def __init__(self, gate: ReadGate):
        super().__init__()
        self._gate = gate
        self.taken: dict = {}     # kept empty: only TrackingGateQueue tracks takes

    def _get(self):
        item = super()._get()
        self._gate._taken(self.qsize())
        return item


class TrackingGateQueue(GateQueue):
    """A GateQueue that also remembers the item each consumer task took last, and calls
    `on_put` with each item queued (Pyrogram's queue; Telethon's takes none of this per-update
    work).

    Why: the handlers run in the consumer's task right after the take, so they can see the raw
    update behind a parsed message (Pyrogram's handlers get only the parsed message; the update
    carries the pts); and a session export sees what is taken but perhaps not handled yet
    (system/resume.py). Pyrogram's dispatcher workers are long-lived tasks; a consumer that
    takes through a new task each time (Telethon's `wait_for(queue.get())`) must not track, or
    every take would be kept."""

    MAX_TAKERS = 256          # consumer tasks remembered before finished ones are dropped

    def __init__(self, gate: ReadGate):
        super().__init__(gate)
        self.on_put = None        # called with each item queued (loop thread), if set

    def _put(self, item):
        super()._put(item)
        if self.on_put is not None:
            self.on_put(item)

    def _get(self):
        item = super()._get()
        task = asyncio.current_task()
        if task is not None:
            taken = self.taken
            if len(taken) >= self.MAX_TAKERS and task not in taken:
                self._forget_done()
            taken[task] = item
        return item

    async def get(self):
        """A consumer asking for its next item is done with its last one: forget that first,
        or an idle worker's last item would count as not handled for as long as it stays idle
        (and hold every saved session state back to it)."""
        task = asyncio.current_task()
        if task is not None:
            self.taken.pop(task, None)
        return await super().get()

    def _forget_done(self) -> None:
        for task in [t for t in self.taken if t.done()]:
            del self.taken[task]

    def last_taken(self):
        """The item the current task took last (None outside a consumer task)."""
        task = asyncio.current_task()
        return self.taken.get(task) if task is not None else None

    def waiting(self) -> list:
        """Every item queued or taken by a consumer (perhaps not handled yet)."""
        self._forget_done()
        return list(self._queue) + list(self.taken.values())


def gated(connection_class: type, gate: ReadGate) -> type:
    """A subclass of the library's connection class whose `recv()` waits for GATE first."""

    class GatedConnection(connection_class):
        async def recv(self):
            await gate.wait()
            return await super().recv()

    GatedConnection.__name__ = f"Gated{connection_class.__name__}"
    GatedConnection.__qualname__ = GatedConnection.__name__
    return GatedConnection

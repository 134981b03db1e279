"""ReadGate: stop reading from Telegram while the client library is behind on its updates.

Why: Telethon and Pyrogram read their connection as fast as the loop lets them and queue every
update they decode (Telethon's `_updates_queue`, Pyrogram's dispatcher queue and per-packet
tasks), with no bound. When a backend gets more updates than its process can handle, that
queue is where they wait: with 10 bots offered 4,000 msg/s on the processes base, Telethon's
queue reached 4,200 entries per backend and the backends' memory went from 139 to 387 MB in
total (measured here). Telegram keeps undelivered updates on its side anyway; a client that
does not read leaves them in TCP and the server's buffers, which is where a backlog belongs.

How: the library's connection class is wrapped so that each `recv()` first awaits
`ReadGate.wait()`. While the backlog (`depth()`, the library's queue length) is above `high`,
the read waits, polling every `step_s`, until the backlog is down to `low`.

Why it cannot deadlock: RPC answers arrive on the same connection as updates. If the update
loop itself is waiting for an answer (Telethon's GetDifference after a gap), the backlog stops
shrinking; after `stall_s` without progress the gate lets the read through. So a paused read
only ever waits for a consumer that is actually consuming.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable

HIGH = 256
LOW = 64
STEP_S = 0.002
STALL_S = 0.05


class ReadGate:
    """Awaited before every read; used on the library's loop thread only."""

    def __init__(self, depth: Callable[[], int], high: int = HIGH, low: int = LOW,
                 step_s: float = STEP_S, stall_s: float = STALL_S):
        if not 0 <= low < high:
            raise ValueError(f"read gate: need 0 <= low < high, got low={low} high={high}")
        self.depth = depth
        self.high, self.low = high, low
        self.step_s, self.stall_s = step_s, stall_s
        self.pauses = 0            # reads that waited
        self.stall_releases = 0    # waits ended because the backlog stopped shrinking
        self.paused_s = 0.0        # total time reads waited
        self.max_depth = 0

    async def wait(self) -> None:
        depth = self.depth()
        if depth > self.max_depth:
            self.max_depth = depth
        if depth <= self.high:
            return
        self.pauses += 1
        start = last_change = time.monotonic()
        last = depth
        try:
            while True:
                await asyncio.sleep(self.step_s)
                depth = self.depth()
                now = time.monotonic()
                if depth <= self.low:
                    return
                if depth < last:
                    last, last_change = depth, now
                elif now - last_change >= self.stall_s:
                    self.stall_releases += 1
                    return
        finally:
            self.paused_s += time.monotonic() - start

    def stats(self) -> dict:
        return {"read_pauses": self.pauses, "read_stall_releases": self.stall_releases,
                "read_paused_s": round(self.paused_s, 3), "update_backlog_max": self.max_depth}


def gated(connection_class: type, gate: ReadGate) -> type:
    """A subclass of the library's connection class whose `recv()` waits for GATE first."""

    class GatedConnection(connection_class):
        async def recv(self):
            await gate.wait()
            return await super().recv()

    GatedConnection.__name__ = f"Gated{connection_class.__name__}"
    GatedConnection.__qualname__ = GatedConnection.__name__
    return GatedConnection

"""ReadGate on a real asyncio loop: a read waits while the library's update queue is long, is
woken by the take that brings it down to `low`, keeps waiting for a slow consumer that still
consumes, and does not wait for one that stopped (the update loop waiting for an RPC answer on
the paused connection)."""
from __future__ import annotations

import asyncio
import time

import pytest

from actors.backends.readgate import GateQueue, ReadGate, TrackingGateQueue, gated


def filled(gate: ReadGate, n: int) -> GateQueue:
    q = gate.make_queue()
    for i in range(n):
        q.put_nowait(i)
    return q


async def consume(q: GateQueue, every_s: float, log: list):
    while True:
        await asyncio.sleep(every_s)
        await q.get()
        log.append(q.qsize())


def test_below_high_reads_at_once():
    gate = ReadGate(high=10, low=2)

    async def go():
        filled(gate, 10)
        await asyncio.wait_for(gate.wait(), 0.5)
    asyncio.run(go())
    assert gate.pauses == 0 and gate.max_depth == 10


def test_the_take_that_reaches_low_wakes_the_read():
    gate = ReadGate(high=10, low=5, stall_s=1.0)
    at_release, taken = [], []

    async def go():
        q = filled(gate, 30)
        task = asyncio.create_task(consume(q, 0.002, taken))
        await asyncio.wait_for(gate.wait(), 5)
        at_release.append(q.qsize())
        task.cancel()
    asyncio.run(go())
    assert gate.pauses == 1 and gate.stall_releases == 0
    assert at_release == [5], (at_release, taken[-3:])   # woken exactly at `low`
    assert gate.paused_s > 0.02


def test_a_slow_consumer_is_waited_for_beyond_stall_s():
    gate = ReadGate(high=4, low=1, stall_s=0.05)
    taken = []

    async def go():
        q = filled(gate, 8)
        task = asyncio.create_task(consume(q, 0.02, taken))    # one take per 20 ms < stall_s
        t0 = time.monotonic()
        await asyncio.wait_for(gate.wait(), 5)
        task.cancel()
        return time.monotonic() - t0, q.qsize()
    waited, left = asyncio.run(go())
    assert gate.stall_releases == 0 and left <= 1, (left, taken)
    assert waited > 0.1, waited            # 7 takes at 20 ms: longer than stall_s


def test_a_stalled_consumer_does_not_hold_the_read():
    gate = ReadGate(high=10, low=5, stall_s=0.05)

    async def go():
        q = filled(gate, 50)
        t0 = time.monotonic()
        await asyncio.wait_for(gate.wait(), 2)
        return time.monotonic() - t0, q.qsize()
    waited, left = asyncio.run(go())
    assert gate.stall_releases == 1 and left == 50
    assert 0.04 <= waited < 1.0, waited


def test_gated_connection_waits_before_its_own_recv():
    order = []

    class Conn:
        def __init__(self, name):
            self.name = name

        async def recv(self):
            order.append("recv")
            return b"packet"

    gate = ReadGate(high=10, low=5, stall_s=5)
    cls = gated(Conn, gate)
    assert issubclass(cls, Conn) and cls.__name__ == "GatedConn"

    async def drain(q):
        await asyncio.sleep(0.02)
        while q.qsize() > 5:
            q.get_nowait()
        order.append("drained")

    async def go():
        q = filled(gate, 20)
        conn = cls("x")
        assert conn.name == "x"
        task = asyncio.create_task(drain(q))
        got = await asyncio.wait_for(conn.recv(), 2)
        await task
        return got
    assert asyncio.run(go()) == b"packet"
    assert order == ["drained", "recv"]


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="low < high"):
        ReadGate(high=5, low=5)


def test_each_consumer_sees_what_it_took_and_an_export_sees_queued_and_taken():
    gate = ReadGate(high=10, low=2)
    seen = {}

    async def worker(name, q, release):
        await q.get()
        seen[name] = q.last_taken()
        await release.wait()           # "handling" it

    async def go():
        q = gate.make_queue(track_taken=True)
        for i in range(4):
            q.put_nowait(i)
        release = asyncio.Event()
        tasks = [asyncio.create_task(worker(n, q, release)) for n in ("a", "b")]
        await asyncio.sleep(0.01)
        assert seen == {"a": 0, "b": 1}
        assert q.last_taken() is None                   # not a consumer
        assert sorted(q.waiting()) == [0, 1, 2, 3]      # 2 queued, 2 taken and in hand
        release.set()
        await asyncio.gather(*tasks)
        assert sorted(q.waiting()) == [2, 3]            # finished consumers are forgotten
    asyncio.run(go())


def test_untracked_queue_keeps_nothing_and_tracked_forgets_finished_takers():
    gate = ReadGate(high=10, low=2)

    async def go():
        plain = filled(gate, 300)
        for _ in range(300):        # each take in its own task, as Telethon's wait_for does
            await asyncio.wait_for(plain.get(), 1)
        assert plain.taken == {}
        tracked = gate.make_queue(track_taken=True)
        for i in range(600):
            tracked.put_nowait(i)
        for _ in range(600):
            await asyncio.wait_for(tracked.get(), 1)
        assert len(tracked.taken) <= TrackingGateQueue.MAX_TAKERS
    asyncio.run(go())


def test_an_idle_worker_waiting_for_its_next_item_holds_nothing_back():
    """Found in review: Pyrogram's dispatcher workers live as long as the client, and a worker
    kept its last item "taken" while it waited for the next one, so after a burst every
    session save stayed clamped to that burst's start until each worker took again."""
    gate = ReadGate(high=10, low=2)

    async def worker(q, handled):
        while True:
            item = await q.get()
            handled.append(item)

    async def go():
        q = gate.make_queue(track_taken=True)
        handled = []
        tasks = [asyncio.create_task(worker(q, handled)) for _ in range(3)]
        for i in range(3):
            q.put_nowait(i)
        await asyncio.sleep(0.01)
        assert sorted(handled) == [0, 1, 2]
        assert q.waiting() == []         # all three workers wait for more
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(go())

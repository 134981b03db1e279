"""ReadGate on a real asyncio loop: a reader waits while the backlog is high, goes on once a
consumer brings it down to `low`, and does not wait for a consumer that stopped consuming (the
case where the update loop itself waits for an RPC answer on the paused connection)."""
from __future__ import annotations

import asyncio
import time

import pytest

from actors.backends.readgate import ReadGate, gated


def run(coro):
    return asyncio.run(coro)


def test_below_high_reads_at_once():
    backlog = [10]
    gate = ReadGate(lambda: backlog[0], high=10, low=2)

    async def go():
        await asyncio.wait_for(gate.wait(), 0.5)
    run(go())
    assert gate.pauses == 0 and gate.max_depth == 10


def test_waits_until_the_consumer_reaches_low():
    backlog = [50]
    gate = ReadGate(lambda: backlog[0], high=10, low=5, step_s=0.001, stall_s=1.0)
    seen_at_release = []

    async def consumer():
        while backlog[0] > 0:
            await asyncio.sleep(0.002)
            backlog[0] -= 1

    async def reader():
        await gate.wait()
        seen_at_release.append(backlog[0])

    async def go():
        task = asyncio.create_task(consumer())
        await asyncio.wait_for(reader(), 5)
        task.cancel()
    run(go())
    assert gate.pauses == 1 and gate.stall_releases == 0
    assert seen_at_release[0] <= 5, seen_at_release      # not released before `low`
    assert seen_at_release[0] >= 3, seen_at_release      # released promptly at `low`
    assert gate.paused_s > 0.05


def test_a_stalled_consumer_does_not_hold_the_reader():
    backlog = [50]
    gate = ReadGate(lambda: backlog[0], high=10, low=5, step_s=0.001, stall_s=0.05)

    async def go():
        t0 = time.monotonic()
        await asyncio.wait_for(gate.wait(), 2)
        return time.monotonic() - t0
    waited = run(go())
    assert gate.stall_releases == 1 and backlog[0] == 50
    assert 0.04 <= waited < 1.0, waited


def test_gated_connection_waits_before_its_own_recv():
    order = []

    class Conn:
        def __init__(self, name):
            self.name = name

        async def recv(self):
            order.append("recv")
            return b"packet"

    backlog = [20]
    gate = ReadGate(lambda: backlog[0], high=10, low=5, step_s=0.001, stall_s=5)
    cls = gated(Conn, gate)
    assert issubclass(cls, Conn) and cls.__name__ == "GatedConn"

    async def drain():
        await asyncio.sleep(0.02)
        order.append("drained")
        backlog[0] = 0

    async def go():
        conn = cls("x")
        assert conn.name == "x"
        task = asyncio.create_task(drain())
        got = await asyncio.wait_for(conn.recv(), 2)
        await task
        return got
    assert run(go()) == b"packet"
    assert order == ["drained", "recv"]


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="low < high"):
        ReadGate(lambda: 0, high=5, low=5)

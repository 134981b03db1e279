"""The in-process runner collects young garbage when it is about to sleep (system/idle_gc.py),
on a real simpleSystemBase: what an actor allocated is collected on the runner's thread once the
runner has nothing left to deliver, and not at all with `idle_gc_young = 0`."""
from __future__ import annotations

import gc
import threading

import pytest
from thespian.actors import Actor

from system.boot import FleetSystem

KEPT: list = []


class Allocator(Actor):
    """Keeps 2,000 new container objects per request, then answers."""

    def receiveMessage(self, msg, sender):
        if msg == "allocate":
            KEPT.append([{"n": i} for i in range(2_000)])
            self.send(sender, "allocated")


@pytest.fixture
def no_automatic_gc():
    """Only explicit collections during the test: CPython's own threshold out of reach."""
    saved = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10_000_000, saved[1], saved[2])
    seen: list = []

    def record(phase, info):
        if phase == "stop":
            seen.append((info["generation"], threading.get_ident()))
    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)
    gc.set_threshold(*saved)
    KEPT.clear()


def allocate_then_idle(fs):
    addr = fs.create(Allocator)
    assert fs.ask(addr, "allocate", 5) == "allocated"
    waiting = gc.get_count()[0]
    fs.listen(0.05)                     # nothing to deliver: the runner goes to sleep
    return waiting


def test_the_runner_collects_what_waits_before_it_sleeps(no_automatic_gc):
    fs = FleetSystem("inprocess", idle_gc_young=100)
    try:
        waiting = allocate_then_idle(fs)
        assert waiting >= 2_000
        stats = fs.runner.idle_gc.stats
        assert stats["young"] + stats["middle"] >= 1
        assert gc.get_count()[0] < 100
        assert (0, threading.get_ident()) in no_automatic_gc or \
            (1, threading.get_ident()) in no_automatic_gc      # on the runner's thread
    finally:
        fs.shutdown()


def test_zero_leaves_collections_to_cpython(no_automatic_gc):
    fs = FleetSystem("inprocess", idle_gc_young=0)
    try:
        waiting = allocate_then_idle(fs)
        assert waiting >= 2_000
        assert fs.runner.idle_gc.stats == {"young": 0, "middle": 0, "full": 0, "seconds": 0.0}
        assert gc.get_count()[0] >= waiting
        assert no_automatic_gc == []
    finally:
        fs.shutdown()

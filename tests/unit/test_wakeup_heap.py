"""simpleSystemBase's pending wake-ups kept in a heap (system.runner.install_wakeup_fast_path):
expired ones come out in due order, ties in the order they were set, the rest stay pending;
and through a real in-process actor system every timer still fires, in due order."""
from __future__ import annotations

import math
import time

import pytest
from thespian.actors import Actor, ActorSystem, WakeupMessage
from thespian.system.timing import currentTime

from system import runner


class Sleeper(Actor):
    """("arm", [(delay, tag), ...]) sets those timers; ("fired",) answers the tags in the
    order their WakeupMessages arrived."""

    def receiveMessage(self, msg, sender):
        if isinstance(msg, WakeupMessage):
            self.fired.append(msg.payload)
        elif msg[0] == "arm":
            self.fired = []
            for delay, tag in msg[1]:
                self.wakeupAfter(delay, payload=tag)
            self.send(sender, "armed")
        elif msg[0] == "fired":
            self.send(sender, list(self.fired))


@pytest.fixture
def base():
    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        b = asys._systemBase
        runner.install_wakeup_fast_path(b)
        yield asys, b
    finally:
        asys.shutdown()


def test_expired_wakeups_pop_in_due_order_and_ties_in_arrival_order(base):
    _, b = base
    assert b._tgfleet_next_due() == math.inf
    for period, tag in [(30.0, "late"), (0.0, "now-1"), (5.0, "mid"), (0.0, "now-2"),
                        (None, "never")]:
        b._add_wakeup("addr", period, tag)
    now = currentTime()
    assert b._tgfleet_next_due() <= now
    assert [p for _, _, p in b._pop_expired_wakeups(now + 0.01)] == ["now-1", "now-2"]
    assert [p for _, _, p in b._pop_expired_wakeups(now + 10)] == ["mid"]
    assert b._pop_expired_wakeups(now + 10) == []
    assert [p for _, _, p in b._pop_expired_wakeups(now + 31)] == ["late"]
    # a wake-up without a period never expires, but it is listed as thespian lists them
    assert [p for _, _, p in b._wakeUps] == ["never"]
    assert b._tgfleet_next_due() == math.inf
    assert b._next_wakeup() is b._wakeUps[0][1]


def test_timers_set_by_an_actor_fire_in_due_order(base):
    asys, _ = base
    actor = asys.createActor(Sleeper)
    plan = [(0.30, "c"), (0.05, "a"), (0.20, "b"), (0.05, "a2")]
    assert asys.ask(actor, ("arm", plan), 5) == "armed"
    deadline = time.monotonic() + 5
    fired = []
    while time.monotonic() < deadline and len(fired) < 4:
        asys.listen(0.1)           # drives the base: due wake-ups are delivered
        fired = asys.ask(actor, ("fired",), 5)
    assert fired == ["a", "a2", "b", "c"]

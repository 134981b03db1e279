"""FleetActor's named timers as its subclasses see them: `armed()` (the backend's session-lock
retry, the store's row counts and the bot's tick ask it), `after_unless_armed()` keeping the
earlier due time, one-shot timers disarming when they fire, periodic ones staying armed.
The actor runs outside an actor system here: thespian's `wakeupAfter` is replaced by a list
and the clock by a fake one (both only in this test)."""
from thespian.actors import WakeupMessage

from actors import base
from actors.base import FleetActor


class Ticking(FleetActor):
    def __init__(self):
        super().__init__()
        self.fired = []

    def on_timer(self, name):
        self.fired.append(name)


def make(monkeypatch):
    clock = [500.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    actor = Ticking()
    wakeups = []
    actor.wakeupAfter = lambda delay, payload=None: wakeups.append((delay, payload))
    return actor, clock, wakeups


def fire(actor):
    actor._handle_wakeup(WakeupMessage(0.0, payload=("timers",)))


def test_armed_follows_after_cancel_and_firing(monkeypatch):
    actor, clock, wakeups = make(monkeypatch)
    assert not actor.armed("retry")
    actor.after("retry", 2.0)
    assert actor.armed("retry") and wakeups == [(2.0, ("timers",))]
    actor.cancel_timer("retry")
    assert not actor.armed("retry")
    actor.after("retry", 1.0)
    actor.every("tick", 0.5)
    clock[0] += 0.6
    fire(actor)
    assert actor.fired == ["tick"]
    assert actor.armed("tick") and actor.armed("retry")    # periodic re-armed; retry not due
    clock[0] += 0.5
    fire(actor)
    assert actor.fired == ["tick", "retry", "tick"]         # in due order: retry 501.0, tick 501.1
    assert not actor.armed("retry") and actor.armed("tick")  # one-shot fired: disarmed


def test_after_unless_armed_keeps_the_earlier_due_time(monkeypatch):
    actor, clock, _ = make(monkeypatch)
    actor.after_unless_armed("gone", 1.0)
    clock[0] += 0.9
    actor.after_unless_armed("gone", 1.0)          # already armed: still due at +1.0
    clock[0] += 0.2
    fire(actor)
    assert actor.fired == ["gone"] and not actor.armed("gone")

"""`FleetActor.report_info`: the one-line status a supervisor shows in `ctl status`. A change in
words goes at once; a change in numbers only goes at most every INFO_NUMBERS_S, because under
load the numbers change on every report and each ChildInfo costs the supervisor a receive.
The actor runs outside an actor system here: `send` is replaced by a list, and the clock by a
fake one (both only in this test; the e2e tests see the INFO column through a real fleet)."""
from actors import base
from actors.base import FleetActor
from messages.lifecycle import ChildInfo


def make_actor(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    actor = FleetActor()
    actor.parent, actor.child_id = "the-supervisor", "bot"
    sent = []
    actor.send = lambda to, msg: sent.append((to, msg))
    return actor, sent, clock


def infos(sent):
    return [m.info for _, m in sent if isinstance(m, ChildInfo)]


def test_words_go_at_once_numbers_at_most_every_interval(monkeypatch):
    actor, sent, clock = make_actor(monkeypatch)
    actor.report_info("circuit=closed in_flight=0")
    actor.report_info("circuit=closed in_flight=0")       # unchanged: nothing
    actor.report_info("circuit=closed in_flight=7")       # numbers only, just now: held
    assert infos(sent) == ["circuit=closed in_flight=0"]
    actor.report_info("circuit=open in_flight=7")         # words changed: at once
    assert infos(sent)[-1] == "circuit=open in_flight=7"
    clock[0] += FleetActor.INFO_NUMBERS_S - 0.1
    actor.report_info("circuit=open in_flight=3")
    assert len(infos(sent)) == 2
    clock[0] += 0.2
    actor.report_info("circuit=open in_flight=3")         # the interval passed: the numbers go
    assert infos(sent) == ["circuit=closed in_flight=0", "circuit=open in_flight=7",
                           "circuit=open in_flight=3"]
    assert all(to == "the-supervisor" for to, _ in sent)


def test_no_supervisor_no_report(monkeypatch):
    actor, sent, _ = make_actor(monkeypatch)
    actor.parent = None
    actor.report_info("queue=1")
    assert sent == []

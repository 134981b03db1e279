"""Inline delivery on the in-process base (system/inline.py), on a real simpleSystemBase.

A thread that posts a hot item to a bridge while the runner sleeps delivers it (and the hot
messages it causes) itself; the first other message, a timer due early, a reply for the
system's caller or a crash's clean-up goes back to the runner's thread, promptly, in order.
The runner sleeps up to 30 s here, so "promptly" means it was woken, not that it happened to
look."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from thespian.actors import Actor
from thespian.system.timing import currentTime

from actors.base import FleetActor
from messages.lifecycle import Crashed, Start, Started
from system import inline
from system.boot import FleetSystem

JOURNAL: list = []              # (event, thread ident): the actors run in this process
BRIDGES: dict = {}


@dataclass(frozen=True)
class HotPing:
    pass


@dataclass(frozen=True)
class ColdPing:
    pass


@dataclass(frozen=True)
class Report:
    events: tuple


@dataclass(frozen=True)
class PostOwnBridge:
    """Post a hot item to its own bridge from inside a delivery."""


@dataclass(frozen=True)
class Count:
    n: int


LONG_CHAIN = inline.MAX_INLINE + 36


class Recorder(FleetActor):
    """On a bridge item: 'chain' sends itself HotPing then ColdPing and reports; 'timer' arms a
    0.05 s timer and reports when it fires; 'crash' raises."""

    def on_start(self, args):
        self.mode = args["mode"]
        BRIDGES[self.child_id] = self.open_bridge()

    def _note(self, event):
        JOURNAL.append((event, threading.get_ident()))

    def on_bridge(self, item):
        self._note(("wake", item))
        if item == "side":
            return
        if self.mode == "crash":
            # A byte on its bridge too: the runner then finds a bridge ready beside its own
            # wake-up, and must still run this crash's clean-up before delivering anything.
            self.bridge.post("side")
            raise RuntimeError("crash in an inline run")
        if self.mode == "long":
            for n in range(LONG_CHAIN):
                self.send(self.myAddress, Count(n))
            return
        if self.mode == "timer":
            self.after("t", 0.05)
        elif self.mode == "due":
            self.after("t", 0.0)                  # due at once, before the hot message
            self.send(self.myAddress, HotPing())
        elif self.mode == "plain":
            self.send(self.parent, HotPing())     # a hot message to a plain thespian Actor
        else:
            self.send(self.myAddress, HotPing())

    def on_HotPing(self, msg, sender):
        self._note("hot")
        if self.mode != "due":
            self.send(self.myAddress, ColdPing())

    def on_ColdPing(self, msg, sender):
        self._note("cold")
        self.send(self.parent, Report(tuple(JOURNAL)))

    def on_Count(self, msg, sender):
        self._note(("count", msg.n))
        if msg.n == LONG_CHAIN - 1:
            self.send(self.parent, Report(tuple(JOURNAL)))

    def on_PostOwnBridge(self, msg, sender):
        self._note("post-inside")
        self.bridge.post("from-inside", hot=True)

    def on_timer(self, name):
        self._note("timer")
        self.send(self.parent, Report(tuple(JOURNAL)))

    def on_stop(self):
        self._note("stop")


class Watcher(Actor):
    """A parent for a Recorder: notes whether the child's clean-up ran before its crash report
    arrived (as it does without inline runs), then passes the report on."""

    def receiveMessage(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "start":
            self.caller = sender
            child = self.createActor(Recorder)
            self.send(child, Start(msg[1], {"mode": msg[1]}, {}, f"t/{msg[1]}"))
        elif isinstance(msg, Crashed):
            JOURNAL.append((("crash-report", any(e == "stop" for e, _ in JOURNAL)),
                            threading.get_ident()))
            self.send(self.caller, msg)
        elif isinstance(msg, Started):
            self.send(self.caller, msg)
        elif isinstance(msg, HotPing):
            JOURNAL.append(("plain-hot", threading.get_ident()))
            self.send(self.caller, Report(tuple(JOURNAL)))


@pytest.fixture
def fs():
    JOURNAL.clear()
    BRIDGES.clear()
    system = FleetSystem("inprocess")
    system.runner.max_sleep = 30.0
    system.runner.driver.hot = inline.HOT | {"HotPing", "Count"}
    yield system
    system.shutdown()


def start(fs, mode):
    addr = fs.create(Recorder)
    started = fs.ask(addr, Start(mode, {"mode": mode}, {}, f"t/{mode}"), 5, expect=Started)
    assert started is not None
    return addr


def post_when_runner_sleeps(fs, item, hold_lock_s: float = 0.0):
    """From another thread, once the runner is asleep in select(): post `item` (hot). With
    `hold_lock_s`, a third thread holds the base (as a busy runner would) meanwhile."""
    drv = fs.runner.driver
    bridge = next(iter(BRIDGES.values()))
    done = threading.Event()

    def poster():
        while drv.runner_wakes_at == float("inf"):
            time.sleep(0.01)
        time.sleep(0.05)
        while not drv.lock.acquire(blocking=False):   # the runner is out of the base
            time.sleep(0.01)
        drv.lock.release()
        if hold_lock_s:
            held = threading.Event()

            def holder():
                with drv.hold():
                    held.set()
                    time.sleep(hold_lock_s)
            threading.Thread(target=holder).start()
            held.wait(2)
        JOURNAL.append(("posted", threading.get_ident()))
        bridge.post(item, hot=True)
        done.set()
    t = threading.Thread(target=poster)
    t.start()
    return t, done


def post_and_listen(fs, hold_lock_s: float = 0.0):
    """Post from another thread while the runner sleeps; what reached the caller, and how long
    it took (the runner sleeps 10 s unless something woke it)."""
    t, _ = post_when_runner_sleeps(fs, "update", hold_lock_s)
    began = time.monotonic()
    got = fs.listen(10)
    t.join(5)
    return got, time.monotonic() - began


def threads_of(event):
    return [tid for e, tid in JOURNAL if e == event]


def test_hot_chain_runs_on_the_posting_thread_and_the_rest_on_the_runner(fs):
    start(fs, "chain")
    report, took = post_and_listen(fs)
    assert took < 5                # the inline run woke the runner for the cold message
    main = threading.get_ident()
    poster = threads_of("posted")[0]
    assert isinstance(report, Report), report
    assert threads_of(("wake", "update")) == [poster]
    assert threads_of("hot") == [poster]
    assert threads_of("cold") == [main]              # not hot: handed to the runner
    assert [e for e, _ in JOURNAL] == ["posted", ("wake", "update"), "hot", "cold"]
    assert fs.runner.driver.stats["inline_runs"] == 1
    assert fs.runner.driver.stats["handed_over"] == 1
    # BridgeWake and HotPing went to the FleetActor directly, not through _runSingleSend
    assert fs.runner.driver.stats["direct"] == 2


def test_a_hot_message_to_an_actor_that_may_raise_goes_through_thespian(fs):
    """A plain thespian Actor's receiveMessage may raise (thespian retries it, then sends a
    PoisonMessage): only a FleetActor, which catches, is called directly."""
    watcher = fs.create(Watcher)
    assert isinstance(fs.ask(watcher, ("start", "plain"), 5, expect=Started), Started)
    report, took = post_and_listen(fs)
    assert isinstance(report, Report), report
    poster = threads_of("posted")[0]
    assert threads_of("plain-hot") == [poster]          # still inline, on the poster's thread
    assert fs.runner.driver.stats["inline_deliveries"] == 2
    assert fs.runner.driver.stats["direct"] == 1        # the BridgeWake to the Recorder only


def test_a_busy_base_is_not_entered_the_runner_delivers(fs):
    start(fs, "chain")
    report, _ = post_and_listen(fs, hold_lock_s=0.3)
    main = threading.get_ident()
    assert isinstance(report, Report), report
    assert threads_of(("wake", "update")) == [main]
    assert threads_of("hot") == [main]
    assert fs.runner.driver.stats["inline_runs"] == 0
    assert fs.runner.driver.stats["busy"] == 1


def test_a_timer_set_inline_wakes_the_runner_in_time(fs):
    start(fs, "timer")
    report, took = post_and_listen(fs)
    assert isinstance(report, Report), report
    assert threads_of(("wake", "update")) == threads_of("posted")
    assert threads_of("timer") == [threading.get_ident()]
    # Due 0.05 s after the post; without the wake-up the runner would sleep until 10 s.
    assert took < 5


def test_a_timer_due_during_an_inline_run_does_not_cut_it(fs):
    """A timer that is due before a hot message waits for the run to end, then the runner
    delivers it (promptly: woken, not at its 30 s limit). thespian itself would deliver the
    timer first, which ended the run and left the hot message to the runner."""
    start(fs, "due")
    report, took = post_and_listen(fs)
    assert isinstance(report, Report), report
    poster = threads_of("posted")[0]
    assert threads_of("hot") == [poster]
    assert threads_of("timer") == [threading.get_ident()]
    assert [e for e, _ in JOURNAL] == ["posted", ("wake", "update"), "hot", "timer"]
    assert took < 5


def test_only_a_timer_due_before_the_runners_planned_wake_up_wakes_it(fs, monkeypatch):
    """The runner sleeps until the earliest timer; an inline run that finds that same timer
    (its due time converted on another clock, a few microseconds off either way) must not
    wake it: two in three light-load messages did, in the middle of their hot path."""
    drv = fs.runner.driver
    drv.runner_wakes_at = time.monotonic() + 1.0
    cases = [(1.0 - inline.TIMER_WAKE_SLACK_S / 4, False),   # the timer it planned for
             (1.0 + 0.5, False),                              # later: its next plan covers it
             (0.5, True)]                                     # earlier: it must wake
    for offset, wakes in cases:
        monkeypatch.setattr(drv.base, "_tgfleet_next_due",
                            lambda offset=offset: currentTime() + offset)
        assert drv._timer_before_runner_wakes() is wakes, offset
    monkeypatch.setattr(drv.base, "_tgfleet_next_due", lambda: float("inf"))
    assert drv._timer_before_runner_wakes() is False


def test_a_crash_inline_leaves_its_clean_up_to_the_runner_before_anything_else(fs):
    watcher = fs.create(Watcher)
    assert isinstance(fs.ask(watcher, ("start", "crash"), 5, expect=Started), Started)
    crashed, took = post_and_listen(fs)
    assert took < 5
    assert isinstance(crashed, Crashed), crashed
    assert "crash in an inline run" in crashed.error
    assert threads_of(("wake", "update")) == threads_of("posted")
    # on_stop joins loop threads: it ran on the runner's thread, not the poster's, and before
    # the crash report reached the parent, as it does when the crash is not inline.
    assert threads_of("stop") == [threading.get_ident()]
    assert threads_of(("crash-report", True)) == [threading.get_ident()]
    assert fs.runner.driver.deferred == []


def test_a_long_hot_chain_is_cut_and_the_runner_finishes_it_in_order(fs):
    start(fs, "long")
    report, took = post_and_listen(fs)
    assert isinstance(report, Report), report
    assert took < 5
    counts = [(e[1], tid) for e, tid in JOURNAL if isinstance(e, tuple) and e[0] == "count"]
    assert [n for n, _ in counts] == list(range(LONG_CHAIN))
    poster = threads_of("posted")[0]
    inline_part = inline.MAX_INLINE - 1      # the bridge wake-up was the first delivery
    assert {tid for _, tid in counts[:inline_part]} == {poster}
    assert {tid for _, tid in counts[inline_part:]} == {threading.get_ident()}


def test_loop_thread_stop_from_its_own_thread_does_not_join_itself():
    from system.loopthread import LoopThread
    lt = LoopThread("self-stop")
    got = []
    lt.loop.call_soon_threadsafe(lambda: got.append(lt.stop(1.0)))
    deadline = time.monotonic() + 5
    while lt.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == [False]          # refused to join itself (a join would have raised)
    assert not lt.alive            # and the loop still stopped once the callback returned


def test_a_post_from_inside_a_delivery_never_nests(fs):
    addr = start(fs, "chain")
    fs.tell(addr, PostOwnBridge())
    report = fs.listen(10)
    main = threading.get_ident()
    assert isinstance(report, Report), report
    events = [e for e, _ in JOURNAL]
    # The post signalled the runner instead of delivering inside the delivery that made it.
    assert events == ["post-inside", ("wake", "from-inside"), "hot", "cold"]
    assert {tid for _, tid in JOURNAL} == {main}
    assert fs.runner.driver.stats["inline_runs"] == 0

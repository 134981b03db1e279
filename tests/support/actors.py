"""Test actors for the supervision tests: real FleetActors with switches for every failure a
supervisor must handle. They journal start/stop to a file so order is visible across processes."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from actors.base import FleetActor
from actors.hosted import LeafHost
from actors.supervisor import Supervisor
from messages.lifecycle import ProbeReply


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Pong:
    child_id: str
    pid: int
    started_at: float


@dataclass(frozen=True)
class Boom:
    pass


@dataclass(frozen=True)
class HangThread:
    """Make the worker thread hang: the actor stays alive but its probes go unanswered."""


@dataclass(frozen=True)
class BlockForever:
    """Block inside receiveMessage (only meaningful with one process per actor)."""


def journal(path: str, line: str):
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


class Worker(FleetActor):
    """Answers Ping, raises on Boom, answers probes through its own worker thread."""

    def on_start(self, args):
        if args.get("fail_start"):
            raise RuntimeError("configured to fail in on_start")
        if args.get("fail_start_file") and os.path.exists(args["fail_start_file"]):
            raise RuntimeError("fail_start_file present")
        self.bridge = self.open_bridge()
        self.hang = threading.Event()
        self.jobs: list = []
        self.cond = threading.Condition()
        self.stop_flag = False
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()
        journal(args.get("journal", ""), f"start {self.child_id}")

    def _work(self):
        while True:
            with self.cond:
                while not self.jobs and not self.stop_flag:
                    self.cond.wait(1.0)
                if self.stop_flag:
                    return
                job = self.jobs.pop(0)
            if self.hang.is_set():
                while not self.stop_flag:
                    time.sleep(0.05)
                return
            self.bridge.post(job)

    def on_probe(self, msg, sender):
        with self.cond:
            self.jobs.append(("probe", msg.seq, sender))
            self.cond.notify()

    def on_bridge(self, item):
        if item[0] == "probe":
            self.send(item[2], ProbeReply(self.child_id, item[1], True))

    def on_Ping(self, msg, sender):
        self.send(sender, Pong(self.child_id, os.getpid(), self.started_at))

    def on_Boom(self, msg, sender):
        raise RuntimeError("boom requested")

    def on_HangThread(self, msg, sender):
        self.hang.set()

    def on_BlockForever(self, msg, sender):
        time.sleep(3600)

    def left_behind(self):
        return "a pretend library thread" if self.args.get("leave_behind") else ""

    def on_stop(self):
        if hasattr(self, "cond"):
            with self.cond:
                self.stop_flag = True
                self.cond.notify()
        journal(self.args.get("journal", ""), f"stop {self.child_id}")


class CtorFails(FleetActor):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        raise RuntimeError("constructor fails on purpose")


def ctor_journal_path() -> str:
    return os.path.join("/tmp", f"tgfleet-ctorfails-{os.environ.get('TGFLEET_MAIN_PID', '0')}.log")


class CountingCtorFails(FleetActor):
    """Constructor raises, journaling each call so a test can count creations (thespian sends
    ChildActorExited twice for these; the supervisor must count one failure per creation)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        journal(ctor_journal_path(), "ctor")
        raise RuntimeError("constructor fails on purpose")


@dataclass(frozen=True)
class GetEvents:
    pass


@dataclass(frozen=True)
class Events:
    events: tuple


class EventCollector(FleetActor):
    """Stands where the store would be: records every LifecycleEvent a supervisor emits."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.events = []

    def on_LifecycleEvent(self, msg, sender):
        self.events.append(msg)

    def on_GetEvents(self, msg, sender):
        self.send(sender, Events(tuple(self.events)))


class FragileGroup(Supervisor):
    """A supervisor that crashes (an exception in its own code) when asked where "crash" is:
    how a test makes a hosted group fail by itself (actors/hosted.py)."""

    def on_WhereIs(self, msg, sender):
        if msg.child_id == "crash":
            raise RuntimeError("group crash requested")
        super().on_WhereIs(msg, sender)


class LeafPair(LeafHost, Supervisor):
    """A supervisor whose workers run hosted in its own process (actors/hosted.py, LeafHost):
    the mechanism of `system.process_unit = "bot"`, with test workers instead of a backend and
    a bot."""


@dataclass(frozen=True)
class AskVia:
    """Ask an Asker to send MSG to TARGET (any address, hosted ones too) as itself."""
    target: object
    msg: object


@dataclass(frozen=True)
class Answer:
    """What came back to an Asker, with who sent it (as the Asker saw it)."""
    msg: object
    sender: str


class Asker(FleetActor):
    """A real actor in a process of its own that talks to hosted actors the way any actor
    does (`self.send`), and reports what comes back to whoever asked it."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.asker = None

    def on_AskVia(self, msg, sender):
        self.asker = sender
        self.send(msg.target, msg.msg)

    def on_unknown(self, msg, sender):
        if self.asker is not None:
            self.send(self.asker, Answer(msg, str(sender)))

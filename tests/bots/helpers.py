"""Helpers for the bot tests: updates as a backend builds them, BotGroup specs, and `BotTree`,
a running test fleet with the asks the tests repeat."""
from __future__ import annotations

import itertools
import time

import psutil

from messages.bot import BotStats, BotStatsRequest
from messages.lifecycle import (ChildAddress, ChildCommand, ChildCommandResult, ChildSpec,
                                TreeStatus, TreeStatusRequest, WhereIs)
from messages.telegram import IncomingMessage, MediaRef
from system.boot import FleetSystem
from tests.support.fake_backend import Ack, FailNext, GetRecords, Hold, Inject, Records

# Generous limits: functional tests check behaviour, not pacing (the fidelity test does that).
FAST_LIMITS = {"bot_per_s": 10_000, "bot_burst": 10_000, "chat_per_s": 10_000,
               "chat_burst": 1_000, "group_per_min": 600_000, "group_burst": 1_000,
               "jitter_s": (0.0, 0.0)}


def forked_from_me():
    """Live processes forked (not exec'd) from this test process, outside our direct children:
    thespian's admin, logger and actors keep our command line."""
    me = psutil.Process()
    mine = me.cmdline()
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.pid != me.pid and p.info["cmdline"] == mine and \
                    p.info["status"] != psutil.STATUS_ZOMBIE and p.ppid() != me.pid:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def run_system(fs: FleetSystem, seconds: float) -> list:
    """Let the actors run for `seconds`; returns the messages that reached us meanwhile.

    In-process workaround: on thespian 4.0.1 `simpleSystemBase.listen(0)` delivers NO pending
    sends (its ExpirationTimer(0) is expired before the first loop), so `InProcessRunner.pump`
    realizes due timers but never delivers them: it spins until the next tell/ask. Here
    `asys.listen(t > 0)` delivers sends and timers, and a short `runner.pump` keeps the bridge
    descriptors served. Drop this once system/runner.py delivers pending sends itself."""
    out = []
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return out
        if fs.runner is None:
            got = [fs.asys.listen(left)]
        else:
            got = [fs.asys.listen(min(0.005, left)), fs.runner.pump(0.0005)]
        out.extend(g for g in got if g is not None)


def msg(bot, chat_id, mid, text="", kind="private", sender_id=None, **kw):
    """An IncomingMessage as a backend would build it."""
    return IncomingMessage(bot=bot, update_id=f"{chat_id}:{mid}", chat_id=chat_id,
                           chat_kind=kind, message_id=mid,
                           sender_id=sender_id if sender_id is not None else abs(chat_id),
                           text=text, date=time.time(), received_at=time.time(), **kw)


def photo(name="p.jpg"):
    return MediaRef("photo", file_id=name, file_name=name, size=10)


def group_spec(name, handlers, restart="permanent", backend=None, intensity=3, **bot):
    """A BotGroup child spec: stand-in backend first, then the bot named `name`."""
    cfg = dict({"name": name, "handlers": handlers, "tick_s": 0.05,
                "retry": {"base_s": 0.05, "max_s": 0.5}}, **bot)
    return ChildSpec(name, "actors.supervisor.BotGroup", {
        "children": [ChildSpec("backend", "tests.support.fake_backend.FakeBackend",
                               dict(backend or {})),
                     ChildSpec("bot", "actors.bot.BotActor", cfg, kind="bot")],
        "intensity": intensity, "period": 10, "probe_interval": 0.5,
        "backoff": {"base_s": 0.02, "max_s": 0.2}}, kind="supervisor", restart=restart)


class BotTree:
    """A running test fleet plus the asks the tests repeat. Every ask carries a fresh request id
    and skips stray replies (late answers to an earlier ask)."""

    def __init__(self, fs: FleetSystem, root):
        self.fs, self.root = fs, root
        self._ids = itertools.count(1)

    def rid(self):
        return f"r{next(self._ids)}"

    def ask(self, addr, message, expect, timeout=10.0):
        deadline = time.monotonic() + timeout
        want = message.request_id

        def match(reply):
            return isinstance(reply, expect) and reply.request_id == want

        reply = self.fs.ask(addr, message, timeout, expect=expect)
        while not match(reply):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            reply = self.fs.listen(left)
        assert match(reply), f"no {expect.__name__} for {message!r} within {timeout}s " \
                             f"(last reply {reply!r})"
        return reply

    def where(self, parent, child_id):
        r = self.ask(parent, WhereIs(child_id, self.rid()), ChildAddress)
        return r.address

    def child(self, group, child_id):
        """Current address of root/<group>/<child_id> (None while not running)."""
        g = self.where(self.root, group)
        return None if g is None else self.where(g, child_id)

    def service(self, name):
        return self.where(self.root, name)

    def wait(self, predicate, timeout=15.0, what="condition"):
        """Run the system until predicate() returns a true value (returned)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            run_system(self.fs, 0.02)
        raise AssertionError(f"{what} not met within {timeout}s; last value: {last!r}")

    def run_for(self, seconds):
        run_system(self.fs, seconds)

    # ---- the stand-in backend -------------------------------------------------------------
    def inject(self, group, updates):
        def attempt():
            backend, bot = self.child(group, "backend"), self.child(group, "bot")
            if backend is None or bot is None:
                return False
            return self.ask(backend, Inject(tuple(updates), bot, self.rid()), Ack).ok
        self.wait(attempt, what=f"bot {group} attached to its backend")

    def control(self, group, message_cls, *args):
        backend = self.child(group, "backend")
        return self.ask(backend, message_cls(*args, request_id=self.rid()), Ack)

    def fail_next(self, group, kind, count=1, flood_wait_s=0.0, chat_id=None):
        return self.control(group, FailNext, kind, count, flood_wait_s, chat_id)

    def hold(self, group, on):
        return self.control(group, Hold, on)

    def records(self, group, since=0) -> Records:
        backend = self.child(group, "backend")
        return self.ask(backend, GetRecords(since, self.rid()), Records)

    def sends(self, group, ok_only=True):
        return [s for s in self.records(group).sends if s.ok or not ok_only]

    def wait_sends(self, group, n, timeout=15.0):
        return self.wait(lambda: (lambda s: s if len(s) >= n else None)(self.sends(group)),
                         timeout, what=f"{n} successful sends at {group}'s backend")

    # ---- stats and status -----------------------------------------------------------------
    def stats(self, group) -> dict:
        bot = self.child(group, "bot")
        return self.ask(bot, BotStatsRequest(self.rid()), BotStats).counters

    def service_stats(self, name) -> dict:
        return self.ask(self.service(name), BotStatsRequest(self.rid()), BotStats).counters

    def settled(self, group):
        """Stats once nothing is queued, in flight or waiting for a retry (else None)."""
        s = self.stats(group)
        return s if s["in_queue"] == s["in_flight"] == s["retry_pending"] == 0 else None

    def settle(self, group, timeout=15.0) -> dict:
        return self.wait(lambda: self.settled(group), timeout,
                         what=f"{group}: nothing queued, in flight or waiting for a retry")

    def status(self) -> dict:
        st = self.ask(self.root, TreeStatusRequest(self.rid()), TreeStatus)
        return {r.path: r for r in st.rows}

    def restart(self, group, child_id):
        g = self.where(self.root, group)
        r = self.ask(g, ChildCommand("restart", child_id, self.rid()), ChildCommandResult)
        assert r.ok, r.error


def assert_accounting(s: dict):
    """Every accepted action ended as sent, published or a counted drop (or is still held)."""
    held = s["in_queue"] + s["in_flight"] + s["retry_pending"]
    assert s["accepted"] == s["sent"] + s["published"] + s["dropped"] + held, s
    assert s["dropped"] == sum(s["dropped_by_reason"].values()), s

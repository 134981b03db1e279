"""The in-process base's per-message debug record is skipped unless DEBUG is on, and messages
are still delivered either way (system.runner.install_quiet_receive)."""
from __future__ import annotations

import logging

import pytest
from thespian.actors import Actor, ActorSystem

from system import runner


class Echo(Actor):
    def receiveMessage(self, msg, sender):
        if isinstance(msg, str):
            self.send(sender, "echo:" + msg)


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def system():
    runner.install_quiet_receive()
    log = logging.getLogger("Thespian")
    cap = Capture()
    old_level = log.level
    log.addHandler(cap)
    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        yield asys, log, cap
    finally:
        asys.shutdown()
        log.removeHandler(cap)
        log.setLevel(old_level)


def test_no_record_per_message_below_debug(system, monkeypatch):
    asys, log, cap = system
    log.setLevel(logging.WARNING)
    actor = asys.createActor(Echo)
    lookups = []
    real = logging.getLogger
    monkeypatch.setattr(logging, "getLogger", lambda *a: lookups.append(a) or real(*a))
    for i in range(5):
        assert asys.ask(actor, f"m{i}", 5) == f"echo:m{i}"
    # thespian's own receive looked the logger up once per delivered message
    assert lookups == []
    assert not [m for m in cap.messages if "got message" in m]


def test_record_per_message_at_debug(system):
    asys, log, cap = system
    log.setLevel(logging.DEBUG)
    actor = asys.createActor(Echo)
    assert asys.ask(actor, "two", 5) == "echo:two"
    assert [m for m in cap.messages if "got message" in m and "two" in m]


def test_install_is_idempotent():
    runner.install_quiet_receive()
    first = runner._simple.actor_base_receive
    runner.install_quiet_receive()
    assert runner._simple.actor_base_receive is first

"""Actors hosted in their supervisor's process and reachable from anywhere (actors/hosted.py,
LeafHost; messages/routing.py): the mechanism behind `system.process_unit = "bot"`, where a
bot's backend and the bot run in one process. Real thespian, processes base (on the in-process
base every actor shares one process anyway and nothing is hosted this way).

A `LeafPair` supervisor hosts two test workers, a and b (rest_for_one). The workers answer
probes through a worker thread and a bridge, so a host that did not watch its children's
descriptors would see them miss probes and restart them."""
import os
import time

import psutil
import pytest
from thespian.actors import ActorExitRequest

from messages.routing import HostedAddress, Routed
from tests.core.conftest import StartedHost, worker
from tests.support.actors import Answer, AskVia, Boom, Ping, Pong


pytestmark = pytest.mark.parametrize("fleet", ["processes"], indirect=True)


class Pair(StartedHost):
    """A started LeafPair hosting workers a and b (rest_for_one)."""

    def __init__(self, fleet, tmp_path, **a_args):
        self.journal = str(tmp_path / "journal.txt")
        args = {"strategy": "rest_for_one", "probe_interval": 0.2, "probe_misses": 3,
                "intensity": 5, "period": 30, "backoff": {"base_s": 0.02, "max_s": 0.2},
                "children": [worker("a", journal=self.journal, **a_args),
                             worker("b", journal=self.journal)]}
        super().__init__(fleet, "tests.support.actors.LeafPair", args, "pair")

    def where(self, child_id):
        return super().where(child_id).address


def test_hosted_workers_live_in_the_hosts_process_and_keep_answering_probes(fleet, tmp_path):
    p = Pair(fleet, tmp_path)
    rows = p.rows()
    assert {k: r.state for k, r in rows.items()} == {"pair/a": "running", "pair/b": "running"}
    assert rows["pair/a"].pid == rows["pair/b"].pid == p.pid
    assert psutil.Process(p.pid).children() == []       # no process was created for them
    # Twenty probe intervals: every probe went through a worker thread, a bridge descriptor
    # this process watches for its hosted children, and back.
    time.sleep(4.0)
    rows = p.rows()
    assert rows["pair/a"].restarts == rows["pair/b"].restarts == 0, rows
    addr = p.where("a")
    assert isinstance(addr, HostedAddress) and addr.host == p.host


def test_a_real_actor_elsewhere_talks_to_a_hosted_worker_like_to_any_actor(fleet, tmp_path):
    p = Pair(fleet, tmp_path)
    asker = fleet.create("tests.support.actors.Asker")
    addr = p.where("b")
    answer = fleet.ask(asker, AskVia(addr, Ping()), 10, expect=Answer)
    assert answer is not None, "no answer came back through the host"
    assert isinstance(answer.msg, Pong) and answer.msg.child_id == "b"
    assert answer.msg.pid == p.pid != os.getpid()
    # The asker saw the hosted worker as the sender, not the host: its reply went back there.
    assert answer.sender == str(addr)
    # Without an asker in between, thespian hands the envelope itself to a non-actor caller.
    raw = fleet.ask(p.host, Routed(addr, Ping()), 10, expect=Routed)
    assert raw is not None and raw.source == addr and isinstance(raw.msg, Pong)


def test_a_hosted_workers_crash_restarts_it_in_the_same_process(fleet, tmp_path):
    p = Pair(fleet, tmp_path)
    old_a, old_b = p.where("a"), p.where("b")
    fleet.tell(p.host, Routed(old_a, Boom()))
    after = p.wait(lambda r: r["pair/b"].restarts == 1 and
                   all(x.state == "running" for x in r.values()), what="a and b restarted")
    assert after["pair/a"].restarts == 1 and "boom requested" in after["pair/a"].last_error
    assert after["pair/a"].pid == after["pair/b"].pid == p.pid     # same process, new actors
    new_a = p.where("a")
    assert new_a != old_a and p.where("b") != old_b
    # The old incarnation's address now leads nowhere (dropped), the new one answers.
    asker = fleet.create("tests.support.actors.Asker")
    assert fleet.ask(asker, AskVia(old_a, Ping()), 1.5, expect=Answer) is None
    answer = fleet.ask(asker, AskVia(new_a, Ping()), 10, expect=Answer)
    assert answer is not None and answer.msg.child_id == "a"
    lines = open(p.journal).read().splitlines()
    assert lines.count("start a") == 2 and lines.count("stop a") == 1


def test_a_hosted_worker_that_leaves_a_thread_running_ends_the_hosts_process(fleet, tmp_path):
    """A backend whose library thread would not stop is still connected: a successor in the
    same process would share its session. Its own process would have ended; the host ends
    this one (its parent restarts it, as after a SIGKILL)."""
    p = Pair(fleet, tmp_path, leave_behind=True)
    proc = psutil.Process(p.pid)
    fleet.tell(p.host, Routed(p.where("b"), Boom()))     # b leaves nothing: restarted here
    p.wait(lambda r: r["pair/b"].restarts == 1 and r["pair/b"].state == "running",
           what="b restarted in place")
    assert proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    fleet.tell(p.host, Routed(p.where("a"), Boom()))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, \
        "the host kept running with a thread its ended child left behind"
    lines = open(p.journal).read().splitlines()
    assert "stop a" in lines       # a's own clean-up ran first
    assert lines.count("stop b") == 2, lines     # and its sibling was stopped, not dropped
    assert lines.count("start b") == 2 and lines.count("start a") == 1, lines


def test_a_host_told_to_exit_stops_its_workers_first(fleet, tmp_path):
    """thespian ends an actor told ActorExitRequest (a supervisor's forced stop, a kill from
    another machine) after its on_stop: the host's on_stop must stop what it hosts, as
    thespian's own exit did to actors with processes of their own."""
    p = Pair(fleet, tmp_path)
    proc = psutil.Process(p.pid)
    fleet.tell(p.host, ActorExitRequest())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.is_running() and \
            proc.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    lines = open(p.journal).read().splitlines()
    assert lines == ["start a", "start b", "stop b", "stop a"], lines

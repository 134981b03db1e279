"""An actor whose parent lives in another actor system (a bot group placed on a member host)
cannot be ended by the parent-death signal, so it watches its parent's probes and stops itself
when they stop (actors/base.py). Real thespian systems on both bases; the "other system" is
named in the Start message, as a supervisor on the leader names its own."""
import os
import threading
import time

from messages.lifecycle import Probe, Start, Started, Stop
from system import placement

WATCH = {"probe_interval": 0.1, "probe_misses": 1}   # silent for > 0.3 s: stop


def _start(fleet, tmp_path, parent_system):
    journal = str(tmp_path / "journal.txt")
    addr = fleet.create("tests.support.actors.Worker")
    env = dict(WATCH, parent_system=parent_system)
    reply = fleet.ask(addr, Start("w", {"journal": journal}, env, "leader/w"), 20,
                      expect=Started)
    assert isinstance(reply, Started), reply
    return addr, journal


def _run(fleet, seconds, poke=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if poke:
            poke()
        fleet.listen(0.05) if fleet.runner else time.sleep(0.05)


def _stopped(journal) -> bool:
    return os.path.exists(journal) and "stop w" in open(journal).read().split("\n")


def test_an_actor_whose_remote_parent_goes_silent_stops_itself(fleet, tmp_path):
    addr, journal = _start(fleet, tmp_path, "another-machine/19500")
    _run(fleet, 0.2, poke=lambda: fleet.tell(addr, Probe(1)))   # probed: keeps running
    assert not _stopped(journal)
    deadline = time.monotonic() + 10
    while not _stopped(journal) and time.monotonic() < deadline:
        _run(fleet, 0.1)                                         # silence
    assert _stopped(journal), "the actor outlived its silent parent"


def test_a_probed_actor_keeps_running(fleet, tmp_path):
    addr, journal = _start(fleet, tmp_path, "another-machine/19500")
    _run(fleet, 1.0, poke=lambda: fleet.tell(addr, Probe(1)))
    assert not _stopped(journal)
    fleet.tell(addr, Stop("test"))
    _run(fleet, 0.5)
    assert _stopped(journal)


def test_an_actor_in_its_parents_system_does_not_watch(fleet, tmp_path):
    addr, journal = _start(fleet, tmp_path, placement.system_id())
    _run(fleet, 1.0)                         # no probes at all: the parent-death signal
    assert not _stopped(journal)             # (or the in-process base) covers this case
    fleet.tell(addr, Stop("test"))
    _run(fleet, 0.5)
    assert _stopped(journal)


def test_a_slow_start_is_not_cut_short_by_the_watch(fleet, tmp_path):
    """A parent probes only a running child: before its Started, a child allows the parent's
    start timeout (plus two intervals) of silence, not just the probe budget. Here a group
    whose own child needs ~1.5 s to start, under a parent whose probe budget is 0.3 s."""
    flag = tmp_path / "fail"
    flag.write_text("1")
    threading.Timer(0.3, flag.unlink).start()    # the child's retry (at 1.5 s) succeeds
    group = fleet.create("actors.supervisor.Supervisor")
    args = {"children": [{"id": "w", "actor_class": "tests.support.actors.Worker",
                          "args": {"fail_start_file": str(flag)}}],
            "intensity": 100, "period": 60, "probe_interval": 0.1,
            "backoff": {"base_s": 1.5, "max_s": 1.5, "jitter": 0.0}}
    env = dict(WATCH, parent_system="another-machine/19500", start_timeout=3.0)
    got = fleet.ask(group, Start("g", args, env, "leader/g"), 8, expect=Started)
    assert isinstance(got, Started), "the group stopped itself while starting"

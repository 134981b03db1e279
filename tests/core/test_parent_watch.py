"""An actor whose parent lives in another actor system (a bot group placed on a member host)
cannot be ended by the parent-death signal, so it watches its parent's probes and stops itself
when they stop (actors/base.py). Real thespian systems on both bases; the "other system" is
named in the Start message, as a supervisor on the leader names its own."""
import os
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

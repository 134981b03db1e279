"""Groups hosted in their parent's process (actors/hosted.py), on both bases, real thespian.

The bots supervisor runs every bot group this way; here a `HostingSupervisor` hosts two small
groups of workers, so each rule can be seen on its own: the groups have no process, their
workers are the host's children, a worker's crash restarts what its group's strategy says and
nothing in the other group, a group that crashes by itself takes its workers with it (their
processes are gone before new ones start), and stops go in order."""
import os
import signal
import time

import psutil
import pytest

from messages.lifecycle import ChildSpec, Stop, WhereIs
from tests.core.conftest import StartedHost, worker
from tests.support.actors import Boom


def _group(gid, journal, cls="actors.supervisor.Supervisor"):
    return ChildSpec(gid, cls, {
        "strategy": "rest_for_one", "probe_interval": 0.2, "intensity": 5, "period": 30,
        "backoff": {"base_s": 0.02, "max_s": 0.2},
        "children": [worker("a", journal=journal), worker("b", journal=journal)]},
        kind="supervisor", shutdown_timeout=10)


class Hosted(StartedHost):
    """A started HostingSupervisor with two hosted groups, g1 and g2."""

    def __init__(self, fleet, tmp_path, g1_class="actors.supervisor.Supervisor"):
        self.journal = str(tmp_path / "journal.txt")
        args = {"children": [_group("g1", self.journal, g1_class), _group("g2", self.journal)],
                "probe_interval": 0.2, "intensity_scope": "child", "intensity": 5, "period": 30,
                "backoff": {"base_s": 0.02, "max_s": 0.2}}
        super().__init__(fleet, "actors.hosted.HostingSupervisor", args, "host")

    def lines(self):
        return open(self.journal).read().splitlines() if os.path.exists(self.journal) else []


WORKERS = ("host/g1/a", "host/g1/b", "host/g2/a", "host/g2/b")


def test_groups_have_no_process_and_their_workers_are_the_hosts_children(fleet, tmp_path):
    h = Hosted(fleet, tmp_path)
    rows = h.rows()
    assert {p: r.state for p, r in rows.items()} == \
        {p: "running" for p in ("host/g1", "host/g2") + WORKERS}
    assert rows["host/g1"].pid == 0 and rows["host/g2"].pid == 0
    if fleet.base == "processes":
        pids = {rows[p].pid for p in WORKERS}
        assert len(pids) == 4 and h.pid not in pids
        assert {psutil.Process(p).ppid() for p in pids} == {h.pid}
        assert {c.pid for c in psutil.Process(h.pid).children()} == pids
    # "<group>/<child>" is answered by the group; a group has no address outside its host
    assert h.where("g1/b").address is not None
    assert h.where("g1").address is None and h.where("g1").state == "running"
    assert h.where("nope/a").state == "unknown"


def test_a_workers_crash_restarts_by_its_groups_strategy_and_nothing_else(fleet, tmp_path):
    h = Hosted(fleet, tmp_path)
    before = h.rows()
    fleet.tell(h.where("g1/a").address, Boom())
    after = h.wait(lambda r: r["host/g1/b"].restarts == 1 and
                   all(p in r and r[p].state == "running" for p in WORKERS), what="g1 restarted")
    assert after["host/g1/a"].restarts == 1 and "boom requested" in after["host/g1/a"].last_error
    assert after["host/g2/a"].restarts == after["host/g2/b"].restarts == 0
    assert after["host/g1"].restarts == after["host/g2"].restarts == 0
    if fleet.base == "processes":
        assert after["host/g2/a"].pid == before["host/g2/a"].pid
        assert after["host/g1/b"].pid != before["host/g1/b"].pid


def test_a_group_that_crashes_takes_its_workers_and_comes_back(fleet, tmp_path):
    h = Hosted(fleet, tmp_path, g1_class="tests.support.actors.FragileGroup")
    before = h.rows()
    h.fleet.tell(h.host, WhereIs("g1/crash", "c"))
    after = h.wait(lambda r: r["host/g1"].restarts == 1 and
                   all(p in r and r[p].state == "running" for p in WORKERS), what="g1 back")
    assert "group crash requested" in after["host/g1"].last_error
    assert after["host/g2/a"].restarts == 0 and after["host/g2"].restarts == 0
    if fleet.base == "processes":
        for p in ("host/g1/a", "host/g1/b"):
            old = before[p].pid
            assert after[p].pid != old
            assert not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie"
        assert after["host/g2/a"].pid == before["host/g2/a"].pid


def test_a_groups_workers_killed_at_once_both_come_back(fleet, tmp_path):
    """thespian may report only one of two children that die at the same moment (it re-checks
    which are alive after each exit it reports, and drops the other without a notice): the
    group must still see both gone (Supervisor.exit_unnoticed) and restart them."""
    if fleet.base != "processes":
        pytest.skip("one process: nothing to kill")
    h = Hosted(fleet, tmp_path)
    for round_ in range(3):
        rows = h.rows()
        old = {p: rows[p].pid for p in ("host/g1/a", "host/g1/b")}
        for pid in old.values():
            os.kill(pid, signal.SIGKILL)
        h.wait(lambda r: all(p in r and r[p].state == "running" and r[p].pid != old[p]
                             for p in old), what=f"both back (round {round_})")
    assert h.rows()["host/g2/a"].restarts == 0


def test_a_stop_goes_group_by_group_in_reverse(fleet, tmp_path):
    h = Hosted(fleet, tmp_path)
    fleet.tell(h.host, Stop("test"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sum(l.startswith("stop") for l in h.lines()) < 4:
        fleet.listen(0.05) if fleet.runner else time.sleep(0.05)
    stops = [l for l in h.lines() if l.startswith("stop")]
    assert stops == ["stop b", "stop a", "stop b", "stop a"]
    starts = [l for l in h.lines() if l.startswith("start")]
    assert starts == ["start a", "start b", "start a", "start b"]

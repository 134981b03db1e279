"""A fleet over two thespian systems (a leader and a member host, both on 127.0.0.1 here): a bot
whose config names the member's host runs there, backend and bot included, and answers through
the leader's local Telegram; a kill on the member is repaired on the member; whichever side goes
away, nothing placed on the member is left running.

Real systems on the processes base: the leader is `tgfleet run`, the member `tgfleet member`
(its own thespian admin, joined to the leader's convention); the leader's probes run every second
(tests/ops/conftest.py), so a placed group whose leader vanished stops itself within ~7 s."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from system.boot import free_port, port_open
from tests.e2e.helpers import (actors, kill_group_until_back, kill_until_back, metric, replies_to, scrape, send_burst,
                               slow_echo_bot, wait_until)
from tests.ops.conftest import REPO, fleet_processes, start_fleet, stop_fleet


class MemberHost:
    def __init__(self, tmp_path, leader_admin: int, host: str = "b", admin: int = 0):
        self.admin = admin or free_port()
        self.config = tmp_path / f"member-{host}.toml"
        self.config.write_text(f"""
[system]
base = "processes"
admin_port = {self.admin}
data_dir = "{tmp_path / f'var-{host}'}"
host = "{host}"
convention = "127.0.0.1:{leader_admin}"
""")
        self.log = tmp_path / f"member-{host}.log"
        self.cmd = [sys.executable, "-m", "system.cli", "member", "--config", str(self.config)]
        self.proc = subprocess.Popen(self.cmd, cwd=str(REPO), stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: "joined the convention" in self.output() or self.proc.poll() is not None,
                   60, what="the member up")
        assert self.proc.poll() is None, self.output()

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def pids(self) -> set[int]:
        """Every live process of this member: forks of its launcher keep its command line."""
        out = set()
        for p in psutil.process_iter(["pid", "status", "cmdline"]):
            try:
                if p.info["cmdline"] == self.cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
                    out.add(p.pid)
            except (psutil.NoSuchProcess, PermissionError):
                continue
        return out

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        left = set()
        for _ in range(50):
            left = self.pids()
            if not left:
                break
            time.sleep(0.1)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return left


@contextlib.contextmanager
def leader_and_member(tmp_path, process_unit=None):
    """A leader (`tgfleet run`, processes base, its local Telegram, no demo bots) and a member
    host "b" joined to it; both are ended by PID afterwards, whatever the test did to them."""
    fleet = start_fleet(tmp_path, "processes", localtg=True, demo_bots=0,
                        wait_for="0 of 0 bots running", process_unit=process_unit)
    hosts = []
    try:
        hosts.append(MemberHost(tmp_path, fleet.ports["admin"]))
        yield fleet, hosts
    finally:
        stop_fleet(fleet)
        # newest first: members started again reuse the command line of the ones before
        for member in reversed(hosts):
            assert member.stop() == set()


@pytest.mark.parametrize("library,unit", [("telethon", "actor"), ("pyrogram", "actor"),
                                          ("telethon", "bot")])
def test_a_bot_placed_on_a_member_runs_there_and_leaves_with_its_leader(tmp_path, library, unit):
    with leader_and_member(tmp_path, process_unit=unit) as (fleet, hosts):
        member = hosts[0]
        idle = member.pids()        # launcher, thespian's admin and logger, the guard
        tg, alice, bot = slow_echo_bot(fleet, library, host="b")
        rows = actors(fleet)
        placed = {p: rows[p] for p in ("root/bots/echo/backend", "root/bots/echo/bot")}
        assert {r["host"] for r in placed.values()} == {"b"}, placed
        group = rows["root/bots/echo"]
        if unit == "actor":
            # The group itself runs hosted in the leader's bots supervisor (actors/hosted.py).
            assert group["host"] == "" and group["pid"] == 0
        else:
            # One process per bot: the group is that process, placed on the member, and hosts
            # its backend and bot.
            assert group["host"] == "b" and {r["pid"] for r in placed.values()} == {group["pid"]}
        assert {r["pid"] for r in placed.values()} <= member.pids() - idle
        assert not {r["pid"] for r in placed.values()} & {p.pid for p in fleet_processes(fleet)}
        assert rows["root/store"]["host"] == ""
        table = fleet.ctl("status").stdout      # the human table gains a HOST column
        assert "HOST" in table.splitlines()[0]
        assert any(line.startswith("root/bots/echo/backend") and " b " in line
                   for line in table.splitlines()), table

        # The placed actors report their metrics to the leader's one endpoint.
        wait_until(lambda: metric(scrape(fleet.ports["metrics"]), "tgfleet_backend_connected",
                                  bot="echo") == 1, 30, what="the placed backend's metrics")
        # Memory per host: what the placed actors' processes report, and nothing else.
        samples = scrape(fleet.ports["metrics"])
        host_b = metric(samples, "tgfleet_host_resident_memory_bytes", host="b")
        assert metric(samples, "tgfleet_host_resident_memory_bytes", host="(leader)") + \
            host_b == metric(samples, "tgfleet_fleet_resident_memory_bytes")
        if unit == "actor":
            placed_rss = sum(metric(samples, "tgfleet_process_resident_memory_bytes", actor=p)
                             for p in placed)
            assert placed_rss > 0 and host_b == placed_rss
        else:   # one process, counted once (each of its actors reports it, at its own moment)
            one = metric(samples, "tgfleet_process_resident_memory_bytes",
                         actor="root/bots/echo/backend")
            assert one > 0 and abs(host_b - one) < 0.25 * one, (host_b, one)

        # A backend killed on the member is restarted on the member by its group (with one
        # process per bot, the bot goes with it).
        texts, answered = send_burst(tg, alice, bot, 6)
        if unit == "actor":
            got = kill_until_back(fleet, "root/bots/echo/backend", answered, texts)
        else:
            got = kill_group_until_back(fleet, "root/bots/echo", answered, texts)
        assert set(got) == set(texts)
        assert actors(fleet)["root/bots/echo/backend"]["pid"] in member.pids()

        # The leader stops in order: the group placed on the member goes with it.
        code, left = stop_fleet(fleet)
        assert code == 0 and left == []
        wait_until(lambda: member.pids() == idle, 30, what="the member back to idle")
        assert member.proc.poll() is None, "the member outlives its leader"


def test_a_placed_group_stops_itself_when_its_leader_is_killed(tmp_path):
    with leader_and_member(tmp_path) as (fleet, hosts):
        member = hosts[0]
        idle = member.pids()
        slow_echo_bot(fleet, host="b")
        assert member.pids() - idle, "nothing placed on the member"
        for p in [fleet.proc] + fleet_processes(fleet):   # the whole leader, at once
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        fleet.proc.wait(10)
        # No parent-death signal reaches across systems: the group notices the missing probes.
        wait_until(lambda: member.pids() == idle, 30, what="the placed group gone")
        assert "no probe from the parent" in member.output(), member.output()[-3000:]


def test_a_killed_member_leaves_nothing_and_its_bots_return_with_it(tmp_path, monkeypatch):
    # retries of an unplaceable group at least every 2 s (default up to 30 s)
    monkeypatch.setenv("TGFLEET_SUPERVISION_BACKOFF_MAX_S", "2")
    # One process per actor: the backend's own row shows it gone and retried (with one
    # process per bot the group's row does).
    with leader_and_member(tmp_path, process_unit="actor") as (fleet, hosts):
        member = hosts[0]
        idle = member.pids()
        tg, alice, bot = slow_echo_bot(fleet, host="b")
        assert member.pids() - idle, "nothing placed on the member"
        os.kill(member.proc.pid, signal.SIGKILL)
        member.proc.wait(10)
        # The guard ends the member's admin, and every actor placed there with it.
        wait_until(lambda: not member.pids(), 30, what="every member process gone")
        assert not port_open("127.0.0.1", member.admin)
        wait_until(lambda: actors(fleet)["root/bots/echo/backend"]["state"] != "running", 30,
                   what="the leader seeing the backend gone")
        assert actors(fleet)["root/store"]["state"] == "running"
        # The member comes back (same host, same port): the group is placed there again (the
        # pending placement on the dead member times out after the start timeout, 15 s).
        member = MemberHost(tmp_path, fleet.ports["admin"], admin=member.admin)
        hosts.append(member)
        wait_until(lambda: (lambda r: r.get("state") == "running" and r["pid"] in member.pids())(
            actors(fleet).get("root/bots/echo/bot", {})), 90, what="the group placed again")
        first = tg.send_as(alice["user_id"], bot["user_id"], "after the member's return")
        wait_until(lambda: replies_to(tg, alice["user_id"], bot["user_id"], first["id"]), 30,
                   what="an answer from the group placed again")
        assert member.stop() == set()   # a member stopped (SIGTERM) with a group placed on it
        wait_until(lambda: actors(fleet)["root/bots/echo/backend"]["state"] != "running", 30,
                   what="the leader seeing the backend gone again")
        # Not a crash of the bot: it is retried (every <= 2 s here, or at the start timeout
        # while the stopped member is still listed) without using up its restart intensity
        # (5 in 60 s). (With a process per group every try was refused at once, "not placed";
        # with the backend placed directly, its last error is at times a start timeout.)
        time.sleep(8)
        rows = actors(fleet)
        group, backend = rows["root/bots/echo"], rows["root/bots/echo/backend"]
        assert group["state"] == "running", group
        assert backend["state"] != "failed", backend
        assert "not placed" in backend["last_error"] or \
            "start timeout" in backend["last_error"], backend
        member = MemberHost(tmp_path, fleet.ports["admin"], admin=member.admin)
        hosts.append(member)
        wait_until(lambda: (lambda r: r.get("state") == "running" and r["pid"] in member.pids())(
            actors(fleet).get("root/bots/echo/bot", {})), 60, what="the group placed once more")
        # A leader whose member vanished still stops in order, in time.
        code, left = stop_fleet(fleet)
        assert code == 0 and left == [], fleet.output()[-12000:]


def test_a_placed_group_the_leader_lost_track_of_never_shares_its_session(tmp_path):
    """The bots supervisor on the leader SIGKILLed: its local groups die with it, but a group
    placed on a member is not its process's child and lives on until its watch of the probes
    ends it, while the restarted supervisor places a new group at once. The new backend waits
    for the old one's session lock instead of opening the same session twice."""
    with leader_and_member(tmp_path) as (fleet, hosts):
        member = hosts[0]
        tg, alice, bot = slow_echo_bot(fleet, host="b")
        old = actors(fleet)["root/bots/echo/backend"]["pid"]
        os.kill(actors(fleet)["root/bots"]["pid"], signal.SIGKILL)
        new = wait_until(lambda: (lambda r: r.get("pid") if r.get("pid") not in (None, 0, old)
                                  else None)(actors(fleet).get("root/bots/echo/backend", {})),
                         60, what="a new backend for echo")
        logs = fleet.output() + member.output()
        assert f"the session is still held by pid {old}" in logs, logs[-3000:]
        # (with one process per bot the old backend releases the lock as it stops, and its
        # process ends a moment later)
        wait_until(lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie",
                   10, what="the old backend's process gone")
        first = tg.send_as(alice["user_id"], bot["user_id"], "after the supervisor's restart")
        wait_until(lambda: replies_to(tg, alice["user_id"], bot["user_id"], first["id"]), 30,
                   what="an answer from the new group")
        assert new in member.pids()

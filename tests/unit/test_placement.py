"""Placement on member hosts (system/placement.py): which system may create an actor, the
config that declares hosts, and a supervisor that never signals a pid from another machine.

The end-to-end behaviour (a leader and a member on 127.0.0.1) is in tests/e2e/test_multihost.py;
a second *machine* cannot exist here, so the one test about it uses another boot id."""
import os
import subprocess
import sys

import pytest

from actors.supervisor import Child, Supervisor
from messages.lifecycle import ChildSpec
from system import placement
from system.config import ConfigError, load_config, validate_bot
from system.member import check_member_config

TOKEN = "123456:ABCDEFGHIJKLMNOP"


def test_an_actor_without_requirements_fits_any_system():
    assert placement.fits({}, None)
    assert placement.fits({placement.HOST_CAPABILITY: "b"}, {})


def test_a_host_requirement_fits_only_that_host():
    want = placement.requirements_for("b")
    assert want == {placement.HOST_CAPABILITY: "b"}
    assert placement.fits({placement.HOST_CAPABILITY: "b", "Admin Port": 1}, want)
    assert not placement.fits({placement.HOST_CAPABILITY: "c"}, want)
    assert not placement.fits({}, want)
    assert placement.requirements_for("") is None


@pytest.mark.parametrize("text,expected", [("127.0.0.1:19500", ("127.0.0.1", 19500)),
                                           ("leader.lan:2000", ("leader.lan", 2000))])
def test_convention_address_parses(text, expected):
    assert placement.parse_convention(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":19500", "host:0", "host:70000", "host:x"])
def test_a_malformed_convention_address_is_refused(text):
    with pytest.raises(ValueError, match="HOST:PORT"):
        placement.parse_convention(text)


def test_machine_and_system_identities(monkeypatch):
    me = placement.system_id()
    assert placement.same_machine(me)
    # the pid namespace is part of the machine: containers on one node share the boot id only
    assert placement.machine_id().endswith(":" + str(os.stat("/proc/self/ns/pid").st_ino))
    # two systems on the same admin port (one per container, or one after the other) differ
    monkeypatch.setenv(placement.SYSTEM_ENV, "")
    monkeypatch.setenv(placement.HOST_ENV, "")
    first = placement.announce_system(19500)
    second = placement.announce_system(19500)
    assert first != second and first.startswith(placement.machine_id() + "/19500.")
    assert placement.same_machine("")            # unknown: as before placement existed
    assert not placement.same_machine("another-boot-id/19500")


def test_config_declares_hosts_on_the_processes_base_only():
    cfg = load_config(None, env={"TGFLEET_SYSTEM_BASE": "processes",
                                 "TGFLEET_SYSTEM_HOST": "b",
                                 "TGFLEET_SYSTEM_CONVENTION": "127.0.0.1:19500"})
    check_member_config(cfg)
    with pytest.raises(ConfigError, match="system.host / system.convention"):
        load_config(None, env={"TGFLEET_SYSTEM_HOST": "b"})
    with pytest.raises(ConfigError, match="system.convention: expected 'HOST:PORT'"):
        load_config(None, env={"TGFLEET_SYSTEM_BASE": "processes",
                               "TGFLEET_SYSTEM_CONVENTION": "nowhere"})
    with pytest.raises(ConfigError, match="system.host"):
        load_config(None, env={"TGFLEET_SYSTEM_BASE": "processes",
                               "TGFLEET_SYSTEM_HOST": "Not A Name"})


@pytest.mark.parametrize("env,match", [
    ({"TGFLEET_SYSTEM_BASE": "processes", "TGFLEET_SYSTEM_CONVENTION": "h:1"}, "system.host"),
    ({"TGFLEET_SYSTEM_BASE": "processes", "TGFLEET_SYSTEM_HOST": "b"}, "system.convention"),
])
def test_a_member_needs_a_host_and_a_leader(env, match):
    with pytest.raises(ConfigError, match=match):
        check_member_config(load_config(None, env=env))


def test_a_bot_names_its_host(tmp_path):
    assert validate_bot({"name": "a", "token": TOKEN, "host": "b"})["host"] == "b"
    with pytest.raises(ConfigError, match="bot.host"):
        validate_bot({"name": "a", "token": TOKEN, "host": "B B"})
    path = tmp_path / "f.toml"
    path.write_text(f'[[bots]]\nname = "a"\ntoken = "{TOKEN}"\nhost = "b"\n')
    with pytest.raises(ConfigError, match=r"bots\[0\].host: .* needs system.base = 'processes'"):
        load_config(str(path), env={})
    assert load_config(str(path), env={"TGFLEET_SYSTEM_BASE": "processes"})["bots"][0][
        "host"] == "b"


def test_a_placed_bot_group_asks_for_its_host():
    """The group runs hosted in the bots supervisor (actors/hosted.py): its backend and bot
    carry the host requirement, the group itself none."""
    from actors.bots import bot_group_spec
    spec = bot_group_spec(validate_bot({"name": "a", "token": TOKEN, "host": "b"}), "/d", {})
    assert spec.requirements is None
    assert [c.requirements for c in spec.args["children"]] == \
        [{placement.HOST_CAPABILITY: "b"}] * 2
    plain = bot_group_spec(validate_bot({"name": "a", "token": TOKEN}), "/d", {})
    assert [c.requirements for c in plain.args["children"]] == [None, None]


class _Recording(Supervisor):
    """A Supervisor outside any actor system: its sends and timers are recorded (no second
    machine can exist in a test, so the child's system is given another boot id)."""

    def __init__(self):
        super().__init__()
        self.sent, self.timers, self.probe_interval, self.escalating = [], [], 1.0, False

    def send(self, addr, msg):
        self.sent.append((addr, msg))

    def after(self, name, delay):
        self.timers.append((name, delay))
        self._timers[name] = [delay, 0.0]


def test_a_supervisor_never_signals_a_pid_of_another_machine():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sup = _Recording()
        spec = ChildSpec("g", "actors.supervisor.BotGroup", requirements={"tgfleet.host": "b"})
        child = Child(spec=spec, addr="remote-address", state="running", pid=victim.pid,
                      system="another-boot-id/19501", gen=3)
        sup.kill_child(child)
        assert victim.poll() is None, "a pid from another machine was signalled here"
        assert [type(m).__name__ for _, m in sup.sent] == ["ActorExitRequest"]
        assert sup.timers == [("gone:g:3", 4.0)]    # counted as gone if no exit notice comes
        sup.kill_child(child)       # killed again at the next probe round: the due time stays
        assert sup.timers == [("gone:g:3", 4.0)]
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_a_supervisor_kills_a_local_child_by_pid():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sup = _Recording()
        child = Child(spec=ChildSpec("w", "x.Y"), addr="addr", state="running", pid=victim.pid,
                      system=placement.system_id())
        sup.kill_child(child)
        assert victim.wait(10) == -9
        # no message; a check in 1 s counts it out if thespian never reports its exit
        assert sup.sent == [] and sup.timers == [("reaped:w:0", 1.0)]
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()

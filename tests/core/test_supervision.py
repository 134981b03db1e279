"""Supervision on both bases: every failure a supervisor must survive, with real thespian."""
import os
import re
import signal
import time

import psutil
import pytest

from messages.lifecycle import ChildCommand, ChildCommandResult, ChildSpec, Start, Stop
from tests.core.conftest import worker
from tests.support.actors import (Boom, Events, GetEvents, HangThread, BlockForever,
                                  ctor_journal_path)


def _journal(tmp_path):
    return str(tmp_path / "journal.txt")


def _lines(path):
    return open(path).read().split() if os.path.exists(path) else []


def test_ordered_start_and_reverse_stop(fleet, start_tree, tmp_path):
    j = _journal(tmp_path)
    tree = start_tree([worker(f"w{i}", journal=j) for i in range(4)])
    assert [r.state for r in tree.status().values()] == ["running"] * 4
    fleet.tell(tree.root, Stop("test"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_lines(j)) < 16:
        fleet.listen(0.05) if fleet.runner else time.sleep(0.05)
    text = open(j).read().splitlines()
    assert text == [f"start w{i}" for i in range(4)] + [f"stop w{i}" for i in (3, 2, 1, 0)]


def test_handler_that_raises_restarts_only_that_child(fleet, start_tree):
    tree = start_tree([worker("w0"), worker("w1"), worker("w2")])
    before = tree.status()
    fleet.tell(tree.addr("w1"), Boom())
    after = tree.wait(lambda s: s["w1"].restarts == 1 and s["w1"].state == "running")
    assert after["w0"].restarts == 0 and after["w2"].restarts == 0
    assert "boom requested" in after["w1"].last_error
    if fleet.base == "processes":
        assert after["w1"].pid != before["w1"].pid
        assert after["w0"].pid == before["w0"].pid


@pytest.mark.parametrize("strategy,expected", [("rest_for_one", {"w0": 0, "w1": 1, "w2": 1}),
                                               ("one_for_all", {"w0": 1, "w1": 1, "w2": 1})])
def test_strategies(fleet, start_tree, tmp_path, strategy, expected):
    j = _journal(tmp_path)
    tree = start_tree([worker(f"w{i}", journal=j) for i in range(3)], strategy=strategy)
    fleet.tell(tree.addr("w1"), Boom())
    st = tree.wait(lambda s: all(s[k].restarts == v for k, v in expected.items())
                   and all(r.state == "running" for r in s.values()))
    assert {k: st[k].restarts for k in expected} == expected
    lines = open(j).read().splitlines()[3:]
    restarted = [k for k, v in expected.items() if v]
    # the ones restarted together stop in reverse order, then start in order
    stops = [l.split()[1] for l in lines if l.startswith("stop")]
    starts = [l.split()[1] for l in lines if l.startswith("start")]
    assert starts == restarted
    # w1 stops first (its own crash), then the others in reverse start order
    assert stops == ["w1"] + [k for k in reversed(restarted) if k != "w1"]


def test_independent_children_restart_without_waiting_for_each_other(fleet, start_tree, tmp_path):
    """The bots' supervisor (one_for_one, intensity counted per child): one child's long
    backoff must not hold up another child's restart (before, restarts went through one
    queue, so a crash-looping bot, or one placed on a member host that is gone, delayed
    every other bot's recovery by its whole backoff and start timeout)."""
    flag = tmp_path / "fail"
    tree = start_tree([worker("a", fail_start_file=str(flag)), worker("b")],
                      intensity_scope="child", intensity=100, period=60,
                      backoff={"base_s": 0.05, "factor": 400.0, "max_s": 20.0, "jitter": 0.0})
    flag.write_text("1")
    fleet.tell(tree.addr("a"), Boom())
    # a: crash (next try in 0.05 s), its start fails (next try in 20 s)
    tree.wait(lambda s: s["a"].restarts >= 2 and s["a"].state == "exited")
    fleet.tell(tree.addr("b"), Boom())
    st = tree.wait(lambda s: s["b"].restarts == 1 and s["b"].state == "running")
    assert st["a"].state == "exited" and st["a"].restarts == 2, st["a"]
    flag.unlink()


def test_a_stop_while_a_restart_is_pending_wins(fleet, start_tree):
    """`ctl stop` of a bot waiting out its backoff: it stays stopped (the restart timer is
    void), and a later start brings it back."""
    tree = start_tree([worker("a"), worker("b")], intensity_scope="child", intensity=100,
                      period=60, backoff={"base_s": 1.0, "max_s": 1.0, "jitter": 0.0})
    fleet.tell(tree.addr("a"), Boom())
    tree.wait(lambda s: s["a"].state == "exited")            # its restart is due in 1 s
    r = fleet.ask(tree.root, ChildCommand("stop", "a", "r1"), 5, expect=ChildCommandResult)
    assert r is not None and r.ok
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:                        # past the restart's due time
        fleet.listen(0.05) if fleet.runner else time.sleep(0.05)
    assert tree.status()["a"].state == "stopped"
    r = fleet.ask(tree.root, ChildCommand("start", "a", "r2"), 10, expect=ChildCommandResult)
    assert r is not None and r.ok
    tree.wait(lambda s: s["a"].state == "running")


def test_a_placed_child_nobody_can_take_is_retried_without_using_up_its_intensity(
        fleet, start_tree):
    """A bot group placed on a member host that is not in the convention (not joined yet,
    stopped): thespian refuses the creation at once. That is not a crash of the bot: it must
    be retried at the backoff's pace for as long as it takes, never marked failed."""
    if fleet.base != "processes":
        pytest.skip("placement needs thespian's processes base")
    spec = ChildSpec("g", "tests.support.actors.Worker", {}, requirements={"tgfleet.host": "b"})
    tree = start_tree([worker("a"), spec], intensity_scope="child", intensity=2, period=60,
                      backoff={"base_s": 0.05, "max_s": 0.1, "jitter": 0.0})
    st = tree.wait(lambda s: s["g"].restarts > 6)              # intensity 2: would be failed
    assert st["g"].state in ("exited", "starting"), st["g"]
    assert "not placed: no system in the convention has" in st["g"].last_error
    assert st["a"].state == "running" and st["a"].restarts == 0


def test_start_that_raises_is_retried_then_escalates(fleet, start_tree, tmp_path):
    flag = tmp_path / "fail"
    flag.write_text("1")
    sub = ChildSpec("sub", "actors.supervisor.Supervisor",
                    {"children": [worker("w", fail_start_file=str(flag))], "intensity": 2,
                     "period": 30, "backoff": {"base_s": 0.01, "max_s": 0.05}},
                    kind="supervisor")
    root = fleet.create("actors.supervisor.Supervisor")
    fleet.tell(root, Start("root", {"children": [sub], "intensity": 50, "period": 30,
                                    "backoff": {"base_s": 0.05, "max_s": 0.2},
                                    "probe_interval": 0.2}, {}, "root"))
    from tests.core.conftest import Tree
    tree = Tree(fleet, root)
    st = tree.wait(lambda s: "sub" in s and s["sub"].restarts >= 1)
    assert "escalation" in st["sub"].last_error
    flag.unlink()
    st = tree.wait(lambda s: s["sub"].state == "running")
    from messages.lifecycle import TreeStatus, TreeStatusRequest
    rows = fleet.ask(root, TreeStatusRequest("x"), 5, expect=TreeStatus)
    inner = {r.path: r for r in rows.rows}
    assert inner["root/sub/w"].state == "running"


def test_constructor_that_raises_counts_once_per_creation(fleet, start_tree):
    path = ctor_journal_path()
    if os.path.exists(path):
        os.unlink(path)
    sub = ChildSpec("sub", "actors.supervisor.Supervisor",
                    {"children": [ChildSpec("bad", "tests.support.actors.CountingCtorFails")],
                     "intensity": 3, "period": 60,
                     "backoff": {"base_s": 0.01, "max_s": 0.02}}, kind="supervisor",
                    restart="temporary")
    tree = start_tree([worker("w0")], intensity=10)
    from messages.lifecycle import AddChild
    from messages.lifecycle import ChildCommandResult
    fleet.ask(tree.root, AddChild(sub, True, "add"), 10, expect=ChildCommandResult)
    st = tree.wait(lambda s: s["sub"].state == "failed", timeout=15)
    assert "escalation" in st["sub"].last_error
    # intensity 3: the 4th failure escalates; thespian's double ChildActorExited must not
    # make it escalate earlier.
    assert _lines(path).count("ctor") == 4
    assert st["w0"].state == "running" and st["w0"].restarts == 0
    os.unlink(path)


def test_backoff_grows_with_jitter_and_resets_after_stable_period(fleet, tmp_path):
    from tests.core.conftest import Tree
    collector = fleet.create("tests.support.actors.EventCollector")
    flag = tmp_path / "fail"
    flag.write_text("1")
    root = fleet.create("actors.supervisor.Supervisor")
    args = {"children": [worker("w", fail_start_file=str(flag))], "intensity": 100,
            "period": 60, "probe_interval": 0.2,
            "backoff": {"base_s": 0.02, "factor": 2.0, "max_s": 5.0, "jitter": 0.2,
                        "reset_after_s": 0.6}}
    fleet.tell(root, Start("root", args, {"store": collector}, "root"))
    tree = Tree(fleet, root)
    tree.wait(lambda s: s["w"].restarts >= 5)
    flag.unlink()
    tree.wait(lambda s: s["w"].state == "running")
    fleet.listen(0.9) if fleet.runner else time.sleep(0.9)   # stable for longer than reset_after
    fleet.tell(tree.addr("w"), Boom())
    tree.wait(lambda s: s["w"].state == "running" and "boom" in s["w"].last_error)
    delays = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:   # events travel asynchronously from root to collector
        events = fleet.ask(collector, GetEvents(), 5, expect=Events).events
        delays = [float(re.match(r"after ([0-9.]+)s", e.reason).group(1))
                  for e in events if e.event == "restart"]
        if any("boom" in e.reason for e in events if e.event == "restart"):
            break
        fleet.listen(0.05) if fleet.runner else time.sleep(0.05)
    first = delays[:5]
    for i, d in enumerate(first):
        nominal = 0.02 * 2 ** i
        assert nominal * 0.8 - 1e-3 <= d <= nominal * 1.2 + 1e-3, (i, d, delays)
    assert len({round(d / (0.02 * 2 ** i), 4) for i, d in enumerate(first)}) > 1, \
        "no jitter: every delay is exactly nominal"
    assert delays[-1] <= 0.02 * 1.2 + 1e-3, f"backoff did not reset: {delays}"


def test_hung_thread_is_detected_killed_and_restarted(fleet, start_tree):
    tree = start_tree([worker("w0"), worker("w1")], probe_misses=3)
    before = tree.status()
    fleet.tell(tree.addr("w0"), HangThread())
    st = tree.wait(lambda s: s["w0"].restarts == 1 and s["w0"].state == "running")
    assert "hung" in st["w0"].last_error
    assert st["w1"].restarts == 0
    if fleet.base == "processes":
        assert not psutil.pid_exists(before["w0"].pid) or \
            psutil.Process(before["w0"].pid).status() == psutil.STATUS_ZOMBIE


def test_blocked_receive_is_killed_and_restarted(fleet, start_tree):
    if fleet.base != "processes":
        pytest.skip("in one process a blocking receiveMessage blocks every actor: "
                    "the in-process hung case is the hung worker thread test")
    tree = start_tree([worker("w0")], probe_misses=3)
    old = tree.status()["w0"].pid
    fleet.tell(tree.addr("w0"), BlockForever())
    st = tree.wait(lambda s: s["w0"].restarts == 1 and s["w0"].state == "running")
    assert st["w0"].pid != old and "hung" in st["w0"].last_error


def test_sigkilled_actor_process_is_restarted_after_it_is_gone(fleet, start_tree):
    if fleet.base != "processes":
        pytest.skip("in-process base: all actors share one process; SIGKILL ends the system")
    tree = start_tree([worker("w0"), worker("w1")])
    old = tree.status()["w0"].pid
    assert old > 1
    os.kill(old, signal.SIGKILL)
    st = tree.wait(lambda s: s["w0"].restarts == 1 and s["w0"].state == "running")
    assert st["w0"].pid != old
    assert not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE

"""The embedded demo as an operator meets it: `run` reaches "10 of 10 bots running", the crowd
gets answers, ctl status shows the bots, and ctl stop/start/restart show up in /metrics within
a second (read with prometheus-client's own parser)."""
import os
import time

import psutil
import pytest

from system import memmerge
from tests.e2e.helpers import localtg_of, metric, scrape, wait_until
from tests.ops.conftest import start_fleet, stop_fleet
from tests.support.forked import run_in_fork


def check_cores_and_heap(fleet, base):
    """system.cpu_affinity = "auto": the in-process fleet, every thread of it, runs on one core
    (system/affinity.py) and the local Telegram it started does not; the processes base is
    left to the scheduler. Once every bot runs, the in-process heap is settled (gc.freeze)."""
    usable = os.sched_getaffinity(0)
    launcher = psutil.Process(fleet.proc.pid)
    threads = [t.id for t in launcher.threads()]
    cores = set()
    for tid in threads:
        try:
            cores.add(tuple(sorted(os.sched_getaffinity(tid))))
        except ProcessLookupError:
            continue   # a thread that ended since the listing
    if base == "inprocess" and len(usable) > 1:
        assert len(threads) > 10, threads      # the backends' loop threads, store, metrics...
        assert len(cores) == 1 and len(next(iter(cores))) == 1, cores
        core = next(iter(cores))[0]
        assert f"cores {core}," in fleet.output()
        tg = [c for c in launcher.children() if "localtg" in " ".join(c.cmdline())]
        assert tg and all(set(os.sched_getaffinity(c.pid)) == usable for c in tg), tg
        assert "objects frozen" in fleet.output()   # printed before "10 of 10 bots running"
    else:
        for child in launcher.children(recursive=True):           # the actor processes
            try:
                cores.add(tuple(sorted(os.sched_getaffinity(child.pid))))
            except ProcessLookupError:
                continue   # gone since the listing (a short-lived helper of thespian's start)
        assert cores == {tuple(sorted(usable))}, cores
        assert "cores any," in fleet.output()
        assert "objects frozen" not in fleet.output()


def kernel_merges() -> bool:
    """Whether the kernel lets a process mark itself mergeable (tried in a forked child)."""
    return run_in_fork(lambda: memmerge.apply("on", "processes")) == 0


def check_memory_merge(fleet, base):
    """system.memory_merge = "auto": on the processes base the launcher asks the kernel to merge
    identical pages before thespian forks, so every actor process carries the mark
    (system/memmerge.py); the in-process base does not ask. The local Telegram, started before,
    is not marked."""
    out = fleet.output()
    launcher = psutil.Process(fleet.proc.pid)
    if base == "inprocess":
        assert "memory merge: off" in out
        assert memmerge.merge_any(launcher.pid) in (False, None)
        return
    if "memory merge: not available" in out:
        # said, not fatal; and only where this kernel refuses this test's process too
        assert not kernel_merges(), out
        return
    assert "memory merge: on" in out or "memory merge: requested" in out, out
    # thespian's admin double-forks into its own session: its processes are found by the
    # config path every process of this fleet inherited on its command line
    cmdlines = {p.pid: " ".join(p.info["cmdline"] or [])
                for p in psutil.process_iter(["cmdline"])}
    actors = [pid for pid, cmd in cmdlines.items()
              if str(fleet.config) in cmd and "localtg" not in cmd and pid != launcher.pid]
    # thespian's admin and logger, the root, its 6 services, one process per demo bot (its
    # backend and bot: system.process_unit = "bot", the default)
    assert len(actors) >= 19, actors
    marks = {pid: memmerge.merge_any(pid) for pid in actors}
    assert not [pid for pid, m in marks.items() if m is False], marks
    if memmerge.merge_any() is not None:   # the kernel says (ksm_stat's ksm_merge_any, 6.7+);
        # a short-lived helper of thespian's may end between the listing and the read: None
        assert sum(1 for m in marks.values() if m) >= 18, marks
    tg = [c.pid for c in launcher.children() if "localtg" in cmdlines.get(c.pid, "")]
    assert tg and not any(memmerge.merge_any(pid) for pid in tg), tg


@pytest.mark.parametrize("base", ["inprocess", "processes"])
def test_demo_fleet_answers_and_reports(tmp_path, base):
    fleet = start_fleet(tmp_path, base, localtg=True, demo_bots=10,
                        wait_for="10 of 10 bots running", timeout=120)
    try:
        tg = localtg_of(fleet)
        wait_until(lambda: "crowd:" in fleet.output(), 20, what="crowd start")
        stats = wait_until(lambda: (lambda s: s if s["answered"] >= 20 else None)(
            tg.crowd_stats()), 60, what="20 crowd messages answered")
        assert stats["duplicates"] == 0
        check_cores_and_heap(fleet, base)
        check_memory_merge(fleet, base)

        code, out, err = fleet.ctl_json("status")
        assert code == 0, err
        groups = [a for a in out["result"]["actors"]
                  if a["path"].startswith("root/bots/") and a["path"].count("/") == 2]
        assert len(groups) == 10 and all(g["state"] == "running" for g in groups)
        r = fleet.ctl("status")
        assert "10 of 10 bots running" in r.stdout

        # every backend shows its circuit breaker, every bot its queue, retries and drops
        def infos():
            rows = fleet.ctl_json("status")[1]["result"]["actors"]
            return {a["path"]: a["info"] for a in rows if a["path"].startswith("root/bots/")}
        info = wait_until(lambda: (lambda i: i if all(i.get(f"root/bots/demo{n}/{k}")
                                                       for n in range(1, 11)
                                                       for k in ("backend", "bot")) else None)(
            infos()), 10, what="status info from every backend and bot")
        assert info["root/bots/demo1/backend"].startswith("circuit=closed login=ready"), info
        assert "retries=" in info["root/bots/demo1/bot"] and "dropped=0" in info[
            "root/bots/demo1/bot"], info
        assert "circuit=closed" in fleet.ctl("status").stdout
        # bot <-> backend traffic takes a lane only when they are separate processes
        # (system/lane.py, process_unit = "actor"); by default they share one
        lane = "lane=no"
        assert all(lane in info[f"root/bots/demo{n}/bot"] for n in range(1, 11)), info

        port = fleet.ports["metrics"]
        s = scrape(port)
        for fam in ("tgfleet_bot_updates_total", "tgfleet_bot_actions_total",
                    "tgfleet_e2e_latency_seconds_count", "tgfleet_backend_connected",
                    "tgfleet_ratelimit_grants_total", "tgfleet_store_write_seconds_count",
                    "tgfleet_process_resident_memory_bytes", "tgfleet_actors"):
            assert metric(s, fam) > 0, f"{fam} missing or zero after traffic"

        def running_bots():
            return metric(scrape(port), "tgfleet_actors", kind="bot", state="running")
        wait_until(lambda: running_bots() == 10, 10, what="10 bots running in /metrics")

        def within_a_second(pred):
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.0:
                if pred():
                    return time.monotonic() - t0
                time.sleep(0.05)
            raise AssertionError("/metrics did not change within a second")

        assert fleet.ctl("stop", "demo3").returncode == 0
        within_a_second(lambda: running_bots() == 9)
        assert fleet.ctl("start", "demo3").returncode == 0
        within_a_second(lambda: running_bots() == 10)
        before = metric(scrape(port), "tgfleet_restarts_total")
        assert fleet.ctl("restart", "demo3").returncode == 0
        within_a_second(lambda: metric(scrape(port), "tgfleet_restarts_total") > before)
    finally:
        rc, left = stop_fleet(fleet)
    assert rc == 0, fleet.output()[-3000:]
    assert not left

"""SIGKILL of the launcher leaves nothing running, on either base.

thespian's admin daemonizes, so on the processes base it and the actors under it would outlive
a SIGKILLed launcher: the root supervisor watches the launcher, stops the tree and ends the
admin (actors/root.py). The embedded local Telegram dies with the launcher (parent-death
signal) on both bases."""
import os
import signal
import time

import psutil

from tests.ops.conftest import fleet_processes, start_fleet, stop_fleet


def localtg_processes(tmp_path) -> list:
    """The embedded local Telegram of the fleet whose data lives under TMP_PATH."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "system.localtg" in cmd and any(str(tmp_path) in a for a in cmd) \
                and p.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(p)
    return out


def test_sigkilled_launcher_leaves_no_process(tmp_path, base):
    fleet = start_fleet(tmp_path, base, localtg=True, demo_bots=2,
                        wait_for="2 of 2 bots running", timeout=120)
    try:
        before = fleet_processes(fleet)
        # processes: launcher, thespian admin + logger, the root and its 6 services, one
        # process per bot (its group, backend and bot)
        assert len(before) >= (12 if base == "processes" else 1), \
            [p.info["cmdline"] for p in before]
        server = localtg_processes(tmp_path)
        assert len(server) == 1, server
        os.kill(fleet.proc.pid, signal.SIGKILL)
        fleet.proc.wait(10)
        deadline = time.monotonic() + 20
        left = fleet_processes(fleet) + localtg_processes(tmp_path)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = fleet_processes(fleet) + localtg_processes(tmp_path)
        assert not left, [(p.pid, p.info["cmdline"]) for p in left]
    finally:
        stop_fleet(fleet)     # kills by PID whatever is still there if the assertion failed
        for p in localtg_processes(tmp_path):
            p.kill()

"""Fixtures for the metrics tests: a FleetSystem on each base, always shut down, and every
process it started ended by PID."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from thespian.actors import ActorExitRequest

from system.boot import FleetSystem
from system.procguard import MAIN_PID_ENV


def _descendants() -> dict[int, float]:
    """pid -> create time of every live process this test process started: its children, and
    the actor processes of its systems (thespian's admin daemonizes, so those are found by the
    TGFLEET_MAIN_PID that FleetSystem puts in their environment)."""
    me = os.getpid()
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out[p.pid] = p.create_time()
        except psutil.NoSuchProcess:
            continue
    for p in psutil.process_iter(["pid"]):
        if p.pid == me or p.pid in out:
            continue
        try:
            if (p.environ().get(MAIN_PID_ENV) == str(me)
                    and p.status() != psutil.STATUS_ZOMBIE):
                out[p.pid] = p.create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def end_processes(before: dict[int, float], grace: float = 3.0) -> list[int]:
    """Wait for the processes started since `before` to exit, then SIGKILL the rest by PID.
    Returns the PIDs that had to be killed."""
    deadline = time.monotonic() + grace
    leftover = {}
    while True:
        leftover = {pid: t for pid, t in _descendants().items() if before.get(pid) != t}
        if not leftover or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    killed = []
    for pid, created in leftover.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() != created:
                continue   # the PID was reused meanwhile: not ours
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    for pid in killed:
        try:
            psutil.Process(pid).wait(2)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
            continue
    return killed


def stop_system(fs, before) -> list[int]:
    """Stop what the test started, shut the system down, then end leftovers by PID."""
    try:
        # simpleSystemBase's shutdown does not stop its actors: without this the exporter's
        # HTTP thread and port would outlive the test in this process.
        for addr in reversed(getattr(fs, "started", [])):
            fs.tell(addr, ActorExitRequest())
    finally:
        try:
            fs.shutdown()
        finally:
            killed = end_processes(before)
    return killed


@pytest.fixture(params=["inprocess", "processes"])
def fleet(request):
    before = _descendants()
    fs = FleetSystem(request.param)
    fs.started = []          # top-level actors the test created (tests.metrics.stack appends)
    try:
        yield fs
    finally:
        killed = stop_system(fs, before)
        assert not killed, f"processes left after shutdown, killed: {killed}"

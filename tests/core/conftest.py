"""Fixtures: a real thespian system on each base, always shut down, no process left behind."""
import time

import psutil
import pytest

from messages.lifecycle import (ChildAddress, ChildSpec, Start, Started, TreeStatus,
                                TreeStatusRequest, WhereIs)
from system.boot import FleetSystem

BASES = ["inprocess", "processes"]


def wait_rows(fs: FleetSystem, rows, predicate, timeout: float, what: str):
    """Keep the system running until `predicate(rows())` holds; returns those rows."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = rows()
        if predicate(last):
            return last
        fs.listen(0.05) if fs.runner else time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout}s; last status: {last}")


class Tree:
    """A started supervisor with helpers to find, poke and wait for its children."""

    def __init__(self, fs: FleetSystem, root):
        self.fs, self.root = fs, root

    def status(self):
        st = self.fs.ask(self.root, TreeStatusRequest("t"), 5, expect=TreeStatus)
        assert st is not None, "supervisor did not answer a status request"
        return {r.path.split("/")[-1]: r for r in st.rows}

    def addr(self, child_id):
        r = self.fs.ask(self.root, WhereIs(child_id, "w"), 5, expect=ChildAddress)
        return r.address if r is not None else None

    def wait(self, predicate, timeout=10.0):
        return wait_rows(self.fs, self.status, predicate, timeout, "condition")


@pytest.fixture(params=BASES)
def fleet(request):
    fs = FleetSystem(request.param)
    yield fs
    fs.shutdown()
    # Processes base: the admin daemonizes (setsid + double fork), so find what it left by
    # session: every actor process of this system shares the admin's session id.
    if request.param == "processes":
        left = []
        for _ in range(200):   # a loaded machine may take seconds to reap them
            left = forked_from_me()
            if not left:
                break
            time.sleep(0.1)
        for p in left:
            p.kill()
        assert not left, f"processes left after shutdown: {[p.pid for p in left]}"


def forked_from_me():
    """Live processes forked (not exec'd) from this test process: thespian's admin, logger and
    actors keep our command line; localtg and other subprocesses have their own."""
    me = psutil.Process()
    mine = me.cmdline()
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.pid != me.pid and p.info["cmdline"] == mine and \
                    p.info["status"] != psutil.STATUS_ZOMBIE and p.ppid() != me.pid:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@pytest.fixture
def start_tree(fleet):
    def _start(children, **sup_args):
        root = fleet.create("actors.supervisor.Supervisor")
        args = dict(sup_args, children=children)
        args.setdefault("backoff", {"base_s": 0.02, "max_s": 0.5})
        args.setdefault("probe_interval", 0.2)
        reply = fleet.ask(root, Start("root", args, {}, "root"), 20, expect=Started)
        assert isinstance(reply, Started), f"tree did not start: {reply!r}"
        return Tree(fleet, root)
    return _start


class StartedHost:
    """A started supervisor that hosts its children (actors/hosted.py), created by the test's
    system: its status rows by path, where its children are, waiting on its rows."""

    def __init__(self, fleet, actor_class: str, args: dict, path: str):
        self.fleet = fleet
        self.host = fleet.create(actor_class)
        reply = fleet.ask(self.host, Start(path, args, {}, path), 30, expect=Started)
        assert isinstance(reply, Started), f"{path} did not start: {reply!r}"
        self.pid = reply.pid

    def rows(self):
        st = self.fleet.ask(self.host, TreeStatusRequest("t"), 5, expect=TreeStatus)
        assert st is not None, "the host did not answer a status request"
        return {r.path: r for r in st.rows}

    def where(self, child_id):
        r = self.fleet.ask(self.host, WhereIs(child_id, "w"), 5, expect=ChildAddress)
        assert r is not None, f"no answer for {child_id}"
        return r

    def wait(self, predicate, timeout=15.0, what="condition"):
        return wait_rows(self.fleet, self.rows, predicate, timeout, what)


def worker(cid, **args):
    return ChildSpec(cid, "tests.support.actors.Worker", args)

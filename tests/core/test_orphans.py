"""No actor process outlives its parent: SIGKILL a middle supervisor, then the admin."""
import os
import signal
import time

import psutil
import pytest

from messages.lifecycle import ChildSpec, TreeStatus, TreeStatusRequest
from tests.core.conftest import worker


def _rows(fleet, root):
    st = fleet.ask(root, TreeStatusRequest("o"), 5, expect=TreeStatus)
    return {r.path: r for r in st.rows} if st else {}


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait(pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.mark.parametrize("fleet", ["processes"], indirect=True)
def test_sigkill_middle_actor_and_admin_leaves_no_orphan(fleet, start_tree):
    mid = ChildSpec("mid", "actors.supervisor.Supervisor",
                    {"children": [worker("a"), worker("b")], "probe_interval": 0.2},
                    kind="supervisor")
    tree = start_tree([mid])
    rows = _rows(fleet, tree.root)
    mid_pid = rows["root/mid"].pid
    leaf_pids = [rows["root/mid/a"].pid, rows["root/mid/b"].pid]
    assert min([mid_pid] + leaf_pids) > 1, rows   # never os.kill(0): that is our own group
    os.kill(mid_pid, signal.SIGKILL)
    assert _wait(lambda: all(_gone(p) for p in leaf_pids)), \
        f"children of a killed supervisor survived: {[p for p in leaf_pids if not _gone(p)]}"
    for p in leaf_pids:   # not re-parented to PID 1 and still running
        assert _gone(p)
    tree.wait(lambda s: s["mid"].state == "running" and s["mid"].restarts == 1)
    rows = _rows(fleet, tree.root)
    new_leaves = [rows["root/mid/a"].pid, rows["root/mid/b"].pid]
    assert set(new_leaves).isdisjoint(leaf_pids)

    # Now the admin: every actor process must go with it.
    root_pid = psutil.Process(rows["root/mid"].pid).ppid()
    admin_pid = psutil.Process(root_pid).ppid()
    print("pids: me", os.getpid(), "root", root_pid, "admin", admin_pid, "mid", rows["root/mid"].pid)
    assert admin_pid not in (os.getpid(), 1, os.getppid())
    actor_pids = [root_pid, rows["root/mid"].pid] + new_leaves
    assert min(actor_pids) > 1
    os.kill(admin_pid, signal.SIGKILL)
    assert _wait(lambda: all(_gone(p) for p in actor_pids)), \
        f"actor processes outlived the admin: {[p for p in actor_pids if not _gone(p)]}"
    # ...and so must thespian's logger, which would keep the admin port open.
    from tests.core.conftest import forked_from_me
    assert _wait(lambda: not forked_from_me()), \
        f"processes outlived the admin: {[p.pid for p in forked_from_me()]}"

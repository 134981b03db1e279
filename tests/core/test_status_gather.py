"""A status request that waits for a sub-supervisor's rows is answered as soon as that
sub-supervisor's process is gone, not at the gather deadline (actors/supervisor.py,
gather_without). Why it matters: with one process per bot a SIGKILLed bot group is a
sub-supervisor that vanished mid-request, and `ctl status` (which the recovery benchmark
polls while it probes the bot) used to hang for the whole gather time (1.6 s).

Real thespian, processes base (a process to stop and kill): the sub-supervisor is stopped
(SIGSTOP) so the request is surely waiting for it, then SIGKILLed."""
import os
import signal
import time

import pytest

from messages.lifecycle import ChildSpec, TreeStatus, TreeStatusRequest
from tests.core.conftest import worker

pytestmark = pytest.mark.parametrize("fleet", ["processes"], indirect=True)


def test_a_sub_supervisor_killed_mid_request_does_not_hold_the_answer(fleet, start_tree):
    sub = ChildSpec("sub", "actors.supervisor.Supervisor",
                    {"children": [worker("w")], "probe_interval": 30.0,
                     "backoff": {"base_s": 5.0, "max_s": 5.0}}, kind="supervisor")
    tree = start_tree([sub], probe_interval=30.0, backoff={"base_s": 5.0, "max_s": 5.0})
    rows = tree.status()
    pid = rows["sub"].pid
    assert pid and pid != os.getpid()
    os.kill(pid, signal.SIGSTOP)
    try:
        fleet.asys.tell(tree.root, TreeStatusRequest("held"))
        time.sleep(0.3)                         # the root asked the stopped sub and waits
    finally:
        os.kill(pid, signal.SIGKILL)
    # the root's gather time is 2 s: an answer within 1.2 s can only come from the exit
    deadline = time.monotonic() + 1.2
    reply = None
    while time.monotonic() < deadline and not isinstance(reply, TreeStatus):
        reply = fleet.asys.listen(max(0.01, deadline - time.monotonic()))
    assert isinstance(reply, TreeStatus), f"no status within 1.2 s of the kill: {reply!r}"
    assert reply.request_id == "held"
    assert "root/sub" in {r.path for r in reply.rows}

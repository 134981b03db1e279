"""In-process, a light-load update goes from Telethon's handler to the actors at once and the
answer's send runs in that handler's task (actors/backends/base.py push_update_keeping_jobs):
the echo's jobs are counted as run in the handler. Such a task, past its push, must not hold
up a session export: Telethon's `_snapshot` waits for the handler tasks that have not handed
their update over yet, and with a 3 s round trip a task still sending would make every export
wait 1 s and give up (no periodic save until the send is done)."""
from __future__ import annotations

import time


from .conftest import backend_args, tg_unlimited

tg = tg_unlimited  # flood limits off


def test_echo_runs_in_the_handler_task_and_exports_do_not_wait_for_it(inprocess_fleet, tg,
                                                                     tmp_path):
    ctl = tg.control
    bot = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")
    # Telethon's handler path: with `fast_updates` the echo's job would run in a task
    # started from the receive loop (tests/backends/test_fast_updates.py)
    group = inprocess_fleet.group(backend_args(tg, bot, "telethon", tmp_path,
                                               session_save_s=0.2, fast_updates=False),
                                  probe={"echo": True, "ack": True})
    for i in range(3):
        ctl.send_as(user["user_id"], bot["user_id"], f"hello {i}")
        group.results([f"echo-{i + 1}"], timeout=20)
    stats = group.stats()
    assert stats["jobs_in_handler"] == 3
    # the answers' packets went to the socket at once (telethon_backend.fleet_connection)
    assert stats["direct_writes"] >= 3

    ctl.set_limits(delay_ms=3000)
    try:
        ctl.send_as(user["user_id"], bot["user_id"], "slow")
        group.wait_collect(lambda c: any(u.text == "slow" for u in c.updates), 20,
                           "the slow message")
        saves = group.stats()["session_saves"]
        t0 = time.monotonic()
        group.fleet.poll(lambda: group.stats()["session_saves"] > saves, 2.0,
                         "a session save while the answer is in flight")
        assert time.monotonic() - t0 < 2.0
        assert not any(r.action_id == "echo-4" for r in group.collect().results), \
            "the answer arrived before the save: the round trip was not 3 s"
        assert group.results(["echo-4"], timeout=20)["echo-4"].ok
    finally:
        ctl.set_limits(delay_ms=0)
    assert group.stats()["jobs_in_handler"] == 4

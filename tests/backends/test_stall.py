"""Stall detection: a backend whose requests stop being answered while its connection looks
fine (Pyrogram #916) is declared stalled and restarted by its supervisor.

The module's local Telegram gets a 5 s delay on every packet: the health request (every 0.3 s)
cannot succeed, nothing else arrives, and after stall_after_s=1.5 the backend crashes with
"stalled: ...". The group's restart backoff (2 s) leaves time to lift the delay before the new
backend connects, which then comes back ready.
"""
from __future__ import annotations

import pytest

from .conftest import backend_args, tg_unlimited

tg = tg_unlimited  # this module's local Telegram: flood limits off


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_stalled_backend_is_restarted(inprocess_fleet, tg, tmp_path, library):
    fleet, ctl = inprocess_fleet, tg.control
    bot = ctl.create_account("bot", provision_key=False)
    args = backend_args(tg, bot, library, tmp_path, health_interval_s=0.3, stall_after_s=1.5)
    group = fleet.group(args, backoff={"base_s": 2.0, "max_s": 2.0, "jitter": 0.0})
    group.wait_collect(lambda c: c.states and c.states[-1].login_state == "ready",
                       what="ready")
    fleet.poll(lambda: group.stats()["health_ok"] >= 2, 10, "health requests answered")
    try:
        ctl.set_limits(delay_ms=5000)
        st = group.wait_status(lambda s: "stalled" in s["backend"].last_error, timeout=20,
                               what="stall detected")
    finally:
        ctl.set_limits(delay_ms=0)
    assert "no update and no successful request" in st["backend"].last_error
    st = group.wait_status(lambda s: s["backend"].restarts >= 1 and
                           s["backend"].state == "running", timeout=30, what="restarted")
    ready = group.wait_collect(lambda c: c.states and c.states[-1].login_state == "ready",
                               what="ready after the restart")
    assert ready.states[-1].connected
    assert group.stats()["stalls"] == 0        # a new backend

"""A flood of updates with a tiny update backlog allowed: the backend stops reading from the
local Telegram while its library is behind (actors/backends/readgate.py), and still delivers
every update, once, to its bot.

Real backends (Telethon and Pyrogram) on both bases, a real local Telegram whose crowd sends
as fast as it can. `update_backlog_high=2` makes the gate engage on this machine whatever its
speed; the default (128) is what bounds a backend's memory under overload (bench/RESULTS.md).
"""
from __future__ import annotations

import pytest

from actors.backends.base import backend_config

from .conftest import backend_args, tg_unlimited

N_USERS = 5
tg = tg_unlimited  # flood limits off


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_flood_with_the_gate_loses_nothing(fleet, tg, tmp_path, library):
    ctl = tg.control
    bot = ctl.create_account("bot", provision_key=False)
    group = fleet.group(backend_args(tg, bot, library, tmp_path, update_backlog_high=2,
                                     update_backlog_low=0))
    sent = 0
    # Up to three floods: whether a backlog is queued at the moment of a read depends on
    # timing (Pyrogram applies updates in tasks of their own), and one flood in a CI run
    # never found the gate's queue above 2.
    for attempt in range(3):
        ctl.crowd_start([bot["user_id"]], users=N_USERS, rate_per_s=3000, duration_s=0.5,
                        text_prefix="flood")
        last = {"sent": -1}

        def burst_over():
            fleet.idle(0.3)
            now = ctl.crowd_stats()["sent"]
            done, last["sent"] = now == last["sent"] and now >= 200, now
            return done
        fleet.poll(burst_over, 30, "the crowd's burst to end", lambda: last)
        sent += ctl.crowd_stop()["sent"]
        got = group.wait_collect(lambda c: len(c.updates) >= sent, 60,
                                 f"all {sent} flooded updates at the probe")
        keys = [u.update_id for u in got.updates if u.text.startswith("flood")]
        assert len(keys) == sent and len(set(keys)) == sent, (len(keys), len(set(keys)), sent)
        if group.stats()["read_pauses"] > 0:
            break
    stats = group.stats()
    assert stats["read_pauses"] > 0, stats            # the gate engaged ...
    assert stats["read_paused_s"] > 0, stats
    assert stats["updates_dropped"] == 0, stats        # ... and nothing was thrown away


def test_bad_backlog_thresholds_are_a_start_error(tg, tmp_path):
    ctl = tg.control
    bot = ctl.create_account("bot", provision_key=False)
    args = backend_args(tg, bot, "telethon", tmp_path, update_backlog_high=2,
                        update_backlog_low=4)
    with pytest.raises(ValueError, match="update_backlog_low must be >= 0 and below"):
        backend_config(args, "telethon")

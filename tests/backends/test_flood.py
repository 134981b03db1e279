"""FLOOD_WAIT surfaces, is reported to the rate limiter, and is never slept on.

Flood limits on (1 msg/s per chat, bursts of 3): ten concurrent sends to one chat. A client
that slept on the wait would eventually deliver all ten; here some come back at once as
error_kind='flood_wait' with the server's wait, and a FloodWaitReport for that chat reaches the
rate-limiter stand-in (env['ratelimit']).
"""
from __future__ import annotations

import pytest

from messages.telegram import SendText
from tests.support.backend_probe import Collect, Collected

from .conftest import backend_args


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_flood_wait_is_reported_not_slept(fleet, tg, tmp_path, library):
    ctl = tg.control
    bot = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")
    limiter = fleet.stand_in()
    group = fleet.group(backend_args(tg, bot, library, tmp_path),
                        env={"ratelimit": limiter, "metrics": limiter})
    ctl.send_as(user["user_id"], bot["user_id"], "hi")
    group.wait_collect(lambda c: c.updates, what="the first message")
    before = ctl.flood_stats()["by_account"].get(str(bot["user_id"]), 0)
    items = [(f"f{i}", SendText(chat_id=user["user_id"], text=f"spam {i}")) for i in range(10)]
    group.act(*items)
    results = group.results([i for i, _ in items])
    flooded = [r for r in results.values() if r.error_kind == "flood_wait"]
    assert flooded and all(r.flood_wait_s >= 1 and not r.ok for r in flooded), results
    assert len(flooded) + sum(r.ok for r in results.values()) == 10, results
    assert sum(r.ok for r in results.values()) < 10       # nobody slept and retried
    assert ctl.flood_stats()["by_account"][str(bot["user_id"])] > before
    reports = fleet.poll(lambda: fleet.ask(limiter, Collect(), 10, Collected).floods, 10,
                         "a FloodWaitReport")
    assert {(r.bot, r.chat_id, r.chat_kind) for r in reports} == \
        {(bot_name(bot), user["user_id"], "private")}
    assert all(r.seconds >= 1 for r in reports)
    assert group.stats()["results_flood_wait"] == len(flooded)

    def samples():        # the backend's latest MetricsReport, once it shows the floods
        for report in fleet.ask(limiter, Collect(), 10, Collected).metrics:
            got = {(f, dict(labels).get("action", dict(labels).get("library", ""))): v
                   for f, labels, v in report.samples}
            if got.get(("tgfleet_flood_waits_total", "")) == len(flooded):
                return got
        return None
    got = fleet.poll(samples, 10, "a MetricsReport from the backend")
    assert got[("tgfleet_backend_connected", library)] == 1.0
    assert got[("tgfleet_circuit_state", "")] == 0.0
    assert got[("tgfleet_backend_requests_in_flight", "")] == 0.0


def bot_name(account):
    return f"bot{account['user_id']}"

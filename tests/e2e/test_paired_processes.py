"""One process per bot (`system.process_unit = "bot"`): a bot and its backend hosted together
in their bot group's process (actors/hosted.py, PairedBotGroup), reachable from every other
actor (messages/routing.py). Real fleet on the processes base, real Telethon and Pyrogram
clients, the local Telegram.

What must hold: the pair shares one process of its own (not the bots supervisor's); everything
that talks to a backend or a bot from another process still reaches it (the rate limiter's
grants, the store, the metrics exporter, `ctl login` through control); a SIGKILL of that
process loses no message: the group comes back in a new process and answers all of them."""
import psutil
import pytest

from tests.e2e.helpers import (actors, ctl_json, kill_group_until_back, metric, scrape,
                               send_burst, slow_echo_bot, wait_until)
from tests.ops.conftest import start_fleet, stop_fleet

BURST = 6


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_a_bot_and_its_backend_share_one_process_and_survive_its_sigkill(tmp_path, library):
    fleet = start_fleet(tmp_path, "processes", localtg=True, demo_bots=0,
                        wait_for="0 of 0 bots running", process_unit="bot")
    try:
        tg, alice, bot = slow_echo_bot(fleet, library)   # answers, so grants reached it
        rows = actors(fleet)
        pid = rows["root/bots/echo"]["pid"]
        assert rows["root/bots/echo/backend"]["pid"] == rows["root/bots/echo/bot"]["pid"] == pid
        assert pid not in (rows["root/bots"]["pid"], rows["root/ratelimit"]["pid"])
        assert psutil.Process(pid).ppid() == rows["root/bots"]["pid"]
        assert psutil.Process(pid).children() == []
        # control -> bots supervisor -> the group (on control's behalf) -> the hosted backend,
        # and the answer straight back to control
        login = ctl_json(fleet, "login", "echo")
        assert login["bot"] == "echo" and login["state"], login
        # the exporter hears from both hosted actors
        wait_until(lambda: metric(scrape(fleet.ports["metrics"]), "tgfleet_backend_connected",
                                  bot="echo") == 1 and
                   metric(scrape(fleet.ports["metrics"]), "tgfleet_bot_updates_total",
                          bot="echo") >= 1, 30, what="the pair's metrics exported")

        texts, answered = send_burst(tg, alice, bot, BURST)
        wait_until(lambda: len(answered()) >= 2, 30, what="the first answers")
        got = kill_group_until_back(fleet, "root/bots/echo", answered, texts)
        assert set(got) == set(texts)
        rows = actors(fleet)
        new = rows["root/bots/echo"]["pid"]
        assert new != pid and rows["root/bots/echo/backend"]["pid"] == new
        assert rows["root/bots/echo"]["restarts"] == 1
        # an orderly stop: each group stops its backend and bot in its own process, cleanly
        code, left = stop_fleet(fleet)
        assert code == 0 and left == [], fleet.output()[-5000:]
        assert "Traceback" not in fleet.output(), fleet.output()[-5000:]
        assert "running after it stopped" not in fleet.output()
    finally:
        stop_fleet(fleet)

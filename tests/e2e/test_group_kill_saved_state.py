"""A bot group SIGKILLed (backend and bot die together) while its bot still holds updates loses
none of them, even though the backend saved its session after it received them: the update
state it saves never passes an update its bot has not finished, so the next backend fetches
those again (GetDifference) and the next bot answers them (a duplicate is allowed, a loss is
not).

Real fleet on the processes base, real Telethon and Pyrogram backends, the local Telegram. The echo bot's
answers are held back by the default per-chat limit (0.95/s, burst 2), so most of a quick burst
from one user waits in the bot's queue while the backend saves its session (every 0.3 s here)."""
import time

import pytest

from tests.e2e.helpers import kill_group_until_back, send_burst, slow_echo_bot, wait_until
from tests.ops.conftest import start_fleet, stop_fleet

BURST = 8


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_updates_covered_by_a_saved_session_survive_a_group_kill(tmp_path, library):
    fleet = start_fleet(tmp_path, "processes", localtg=True, demo_bots=0,
                        wait_for="0 of 0 bots running")
    try:
        tg, alice, bot = slow_echo_bot(fleet, library, session_save_s=0.3)

        texts, answered = send_burst(tg, alice, bot, BURST)
        wait_until(lambda: len(answered()) >= 2, 30, what="the first answers")
        # Several session saves (every 0.3 s) since all 8 arrived: the state is past them all.
        time.sleep(1.0)
        got = kill_group_until_back(fleet, "root/bots/echo", answered, texts)
        assert set(got) == set(texts)
    finally:
        stop_fleet(fleet)

"""A bot group SIGKILLed (backend and bot die together) while its bot still holds updates loses
none of them, even though the backend saved its session after it received them: the update
state it saves never passes an update its bot has not finished, so the next backend fetches
those again (GetDifference) and the next bot answers them (a duplicate is allowed, a loss is
not).

Real fleet on the processes base, real Telethon and Pyrogram backends, the local Telegram. The echo bot's
answers are held back by the default per-chat limit (0.95/s, burst 2), so most of a quick burst
from one user waits in the bot's queue while the backend saves its session (every 0.3 s here)."""
import collections
import os

import pytest
import signal
import time

from tests.e2e.helpers import actors, replies_to, slow_echo_bot, wait_until
from tests.ops.conftest import start_fleet, stop_fleet

BURST = 8


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_updates_covered_by_a_saved_session_survive_a_group_kill(tmp_path, library):
    fleet = start_fleet(tmp_path, "processes", localtg=True, demo_bots=0,
                        wait_for="0 of 0 bots running")
    try:
        tg, alice, bot = slow_echo_bot(fleet, library, session_save_s=0.3)

        texts = [f"burst {i}" for i in range(BURST)]
        sent = [tg.send_as(alice["user_id"], bot["user_id"], t) for t in texts]
        since = sent[0]["id"] - 1

        def answered() -> collections.Counter:
            return collections.Counter(m["text"] for m in replies_to(
                tg, alice["user_id"], bot["user_id"], since) if m["text"] in texts)
        wait_until(lambda: len(answered()) >= 2, 30, what="the first answers")
        # Several session saves (every 0.3 s) since all 8 arrived: the state is past them all.
        time.sleep(1.0)
        group = actors(fleet)["root/bots/echo"]
        before = answered()
        assert len(before) < BURST, "everything was answered before the kill: nothing to test"
        os.kill(group["pid"], signal.SIGKILL)

        wait_until(lambda: (lambda a: a["state"] == "running" and a["pid"] != group["pid"])(
            actors(fleet)["root/bots/echo"]), 60, what="the bot group restarted")
        got = wait_until(lambda: (lambda c: c if len(c) == BURST else None)(answered()), 60,
                         what=f"all {BURST} messages answered (before the kill: {dict(before)})")
        assert set(got) == set(texts)
    finally:
        stop_fleet(fleet)

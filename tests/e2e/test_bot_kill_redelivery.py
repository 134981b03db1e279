"""A bot process SIGKILLed while it still holds updates it has not finished loses none of them:
its backend keeps every update until the bot reports it finished (`UpdatesDone`) and hands the
unfinished ones to the restarted bot, which answers them (a duplicate is allowed, a loss is
not). Found by `ops/chaos`: a message sent around the SIGKILL of its bot went unanswered
without a counted drop.

Real fleet on the processes base, real Telethon backend, the local Telegram. The echo bot's
answers are held back by the default per-chat limit (0.95/s, burst 2), so when the bot dies most
of a quick burst from one user is still waiting in its queue."""
from tests.e2e.helpers import actors, kill_until_back, send_burst, slow_echo_bot, wait_until
from tests.ops.conftest import start_fleet, stop_fleet

BURST = 8


def test_updates_held_by_a_killed_bot_are_answered_by_its_successor(tmp_path):
    # One process per actor: the bot dies alone (with one per bot, the default, its backend
    # would die with it: tests/e2e/test_group_kill_saved_state.py)
    fleet = start_fleet(tmp_path, "processes", localtg=True, demo_bots=0,
                        wait_for="0 of 0 bots running", process_unit="actor")
    try:
        tg, alice, bot = slow_echo_bot(fleet)
        # separate processes: their hot-path messages take a lane (system/lane.py)
        wait_until(lambda: "lane=yes" in actors(fleet)["root/bots/echo/bot"]["info"], 15,
                   what="the bot's lane to its backend")

        texts, answered = send_burst(tg, alice, bot, BURST)
        # The chat's burst (2) goes out at once; the rest wait for the chat limit in the bot.
        wait_until(lambda: len(answered()) >= 2, 30, what="the first answers")
        got = kill_until_back(fleet, "root/bots/echo/bot", answered, texts)
        assert set(got) == set(texts)
        # At-least-once: a message answered just before the kill may be answered again, but
        # only a message the dead bot had not reported finished can be (at most ~0.25 s of them).
        assert sum(got.values()) - BURST <= 2, got
        # The new bot reports what it finished, so the backend lets go of it: nothing stays
        # kept for a successor once every message is answered.
        wait_until(lambda: "unfinished=0" in actors(fleet)["root/bots/echo/backend"]["info"],
                   30, what="the backend holding no unfinished update")
    finally:
        stop_fleet(fleet)

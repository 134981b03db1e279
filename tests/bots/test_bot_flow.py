"""The bot actor end to end through the fleet's shape (root -> ratelimit, eventbus, BotGroups ->
stand-in backend, bot), on both bases: every builtin handler, dedup, failing and odd input."""
from messages.telegram import ForwardMessages, SendText
from tests.bots.helpers import assert_accounting, group_spec, msg, photo

ECHO = [{"type": "echo", "prefix": "> "}]
RAISING = "tests.support.bad_handlers:Raising"


def texts(sends):
    return sorted((s.action.chat_id, s.action.text) for s in sends
                  if isinstance(s.action, SendText))


def test_echo_answers_each_private_message(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO)])
    tree.inject("alpha", [msg("alpha", 100 + i, 1, f"hi {i}") for i in range(5)]
                + [msg("alpha", -100999, 7, "a group is not echoed", kind="group")])
    sends = tree.wait_sends("alpha", 5)
    assert texts(sends) == [(100 + i, f"> hi {i}") for i in range(5)]
    for s in sends:
        assert s.action.reply_to == 1 and s.action.origin == f"{s.action.chat_id}:1"
    s = tree.settle("alpha")
    assert s["sent"] == 5 and s["updates"] == 6 and s["connected"] is True
    assert s["self_id"] == 999
    assert_accounting(s)


def test_autoreply_rules_private_and_opted_in_group(bot_tree):
    rules = {"type": "autoreply", "default": "?",
             "rules": [{"match": "hello", "reply": "Hi {first_word}!"},
                       {"match": "price", "reply": "10$", "chats": [-100500]}]}
    tree = bot_tree([group_spec("alpha", [rules])])
    tree.inject("alpha", [msg("alpha", 11, 1, "hello there"),
                          msg("alpha", 12, 1, "xyz"),
                          msg("alpha", -100500, 1, "price please", kind="group", sender_id=5),
                          msg("alpha", -100500, 2, "hello", kind="group", sender_id=5)])
    sends = tree.wait_sends("alpha", 3)
    s = tree.settle("alpha")
    assert texts(tree.sends("alpha")) == [(-100500, "10$"), (11, "Hi hello!"), (12, "?")]
    assert s["sent"] == 3 and s["handler_errors"] == {}
    assert not s["ticking"]     # no handler here has time-based work: no wake-ups for it
    assert_accounting(s)


def test_forward_sends_a_media_group_as_one_forward(bot_tree):
    fwd = {"type": "forward", "sources": [-100200], "targets": [-100300, -100301],
           "group_window_s": 0.1}
    tree = bot_tree([group_spec("alpha", [fwd])])
    album = [msg("alpha", -100200, mid, "" if mid > 2 else "caption", kind="channel",
                 media=photo(f"{mid}.jpg"), grouped_id=55) for mid in (2, 3, 4)]
    tree.inject("alpha", [msg("alpha", -100200, 1, "single", kind="channel")] + album
                + [msg("alpha", -100200, 5, "", kind="channel")])    # service message: skipped
    sends = tree.wait_sends("alpha", 4)
    s = tree.settle("alpha")
    fwds = sorted((a.to_chat_id, a.message_ids) for a in (x.action for x in tree.sends("alpha")))
    assert all(isinstance(x.action, ForwardMessages) for x in sends)
    assert fwds == [(-100301, (1,)), (-100301, (2, 3, 4)), (-100300, (1,)), (-100300, (2, 3, 4))]
    assert s["handlers"]["forward"]["groups_flushed"] == 1
    assert s["handlers"]["forward"]["skipped_empty"] == 1
    # the album needed the tick (it was flushed by it); with nothing pending the bot stops it
    tree.wait(lambda: not tree.stats("alpha")["ticking"], what="the tick stopped")
    assert_accounting(s)


def test_relay_passes_question_and_answer(bot_tree):
    tree = bot_tree([group_spec("alpha", [{"type": "relay", "peer": 777}])])
    tree.inject("alpha", [msg("alpha", 501, 1, "what time is it?")])
    tree.wait_sends("alpha", 1)
    tree.inject("alpha", [msg("alpha", 777, 1, "noon")])
    tree.wait_sends("alpha", 2)
    assert [(s.action.chat_id, s.action.text) for s in tree.sends("alpha")] == \
        [(777, "what time is it?"), (501, "noon")]
    assert_accounting(tree.settle("alpha"))


def test_redelivered_batch_is_answered_once(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO)])
    batch = [msg("alpha", 100 + i, 1, f"m{i}") for i in range(3)]
    tree.inject("alpha", batch)
    tree.wait_sends("alpha", 3)
    tree.inject("alpha", batch + [msg("alpha", 200, 1, "new")])
    tree.wait_sends("alpha", 4)
    s = tree.settle("alpha")
    # the duplicates came before "new" in the same batch: had they been answered, their
    # answers would be at the backend by now
    assert len(tree.sends("alpha")) == 4
    assert s["dedup_hits"] == 3 and s["updates"] == 7 and s["sent"] == 4


def test_raising_handler_is_counted_and_bot_keeps_going(bot_tree):
    ticker = {"type": RAISING, "name": "ticker", "trigger": "never", "tick_raises": True}
    tree = bot_tree([group_spec("alpha", [{"type": RAISING}, ticker] + ECHO)])
    tree.inject("alpha", [msg("alpha", 100, 1, "boom 1"), msg("alpha", 101, 1, "fine")])
    tree.wait_sends("alpha", 2)
    tree.inject("alpha", [msg("alpha", 100, 2, "boom 2")])
    tree.wait_sends("alpha", 3)
    # the ticker raises on the bot's periodic tick (tick_s): wait for one to have happened
    tree.wait(lambda: tree.stats("alpha")["handler_errors"].get("ticker", 0) >= 1,
              what="a tick of the raising ticker")
    s = tree.settle("alpha")
    assert s["handler_errors"]["raising"] == 2 and s["handler_errors"]["ticker"] >= 1
    assert texts(tree.sends("alpha")) == [(100, "> boom 1"), (100, "> boom 2"), (101, "> fine")]
    row = tree.status()["root/alpha/bot"]
    assert row.state == "running" and row.restarts == 0


def test_update_without_text_or_media_is_ignored(bot_tree):
    handlers = ECHO + [{"type": "autoreply", "default": "?"},
                       {"type": "forward", "sources": [100], "targets": [-100300]},
                       {"type": "relay", "peer": 777}]
    tree = bot_tree([group_spec("alpha", handlers)])
    empty = msg("alpha", 100, 1, "")
    tree.inject("alpha", [empty, "not an update at all", msg("alpha", 101, 1, "x")])
    tree.wait_sends("alpha", 3)     # x: echo, autoreply, relay to the peer; nothing else
    s = tree.settle("alpha")
    sends = tree.sends("alpha")
    assert len(sends) == 3 and all(x.action.origin == "101:1" for x in sends)
    assert s["handlers"]["forward"]["skipped_empty"] == 1
    assert s["handler_errors"] == {} and s["ignored_updates"] == 1 and s["updates"] == 3
    assert tree.status()["root/alpha/bot"].restarts == 0

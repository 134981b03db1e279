"""Rate-limit leases through the real actors (RateLimiterActor + BotActor + stand-in backend), on
both bases: once the bot holds a lease, messages to fresh private chats go out without a grant
round trip each, the limiter learns every one of them with the bot's next request (a renewal
of the spent lease, made once their results are in), and a chat the bot has just written to
still waits for a grant."""
from tests.bots.helpers import assert_accounting, group_spec, msg

ECHO = [{"type": "echo"}]
# quiet_s = chat_burst / chat_per_s = 0.1 s; lease up to min(8, bot_burst // 2) tokens
LIMITS = {"bot_per_s": 1000.0, "bot_burst": 20, "chat_per_s": 20.0, "chat_burst": 2,
          "jitter_s": (0.0, 0.0), "lease_tokens": 8, "lease_s": 30.0}


def test_fresh_chats_go_out_on_the_lease_and_the_limiter_counts_them(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO)], limits=LIMITS)
    tree.inject("alpha", [msg("alpha", 500, 1, "first")])
    tree.wait_sends("alpha", 1)
    s = tree.settle("alpha")
    assert s["grant_requests"] == 1 and s["lease_sends"] == 0   # no lease before a grant
    assert s["lease_tokens"] == 8
    tree.run_for(0.3)                      # past the start guard (quiet_s after the bot started)

    tree.inject("alpha", [msg("alpha", 600 + i, 1, f"m{i}") for i in range(8)])
    tree.wait_sends("alpha", 9)
    # the spent lease is renewed once their results are in (off the messages' path), and
    # that request reports the 8; settled is not enough: the renewal's grant may still be on
    # its way (seen on the processes base)
    s = tree.wait(lambda: (st := tree.settled("alpha")) and st["lease_tokens"] == 8 and st, 15,
                  what="alpha: settled, with the renewed lease")
    assert s["lease_sends"] == 8                  # no round trip for those 8
    assert s["lease_renewals"] == 1 and s["grant_requests"] == 2
    assert tree.service_stats("ratelimit")["lease_used_total"] == 8

    # a fresh chat goes out on the new lease; a second message to it in the same turn is not
    # quiet any more and waits for a grant, whose request reports the ninth
    tree.inject("alpha", [msg("alpha", 700, 1, "ninth"), msg("alpha", 700, 2, "again")])
    tree.wait_sends("alpha", 11)
    s = tree.settle("alpha")
    assert s["lease_sends"] == 9 and s["grant_requests"] == 3 and s["sent"] == 11
    lim = tree.service_stats("ratelimit")
    assert lim["lease_used_total"] == 9
    assert lim["granted_total"] == 11
    assert_accounting(s)
    chats = sorted(x.action.chat_id for x in tree.sends("alpha"))
    assert chats == sorted([500, 700, 700] + [600 + i for i in range(8)])


def test_no_lease_sends_inside_the_start_guard_nor_to_groups(bot_tree):
    limits = dict(LIMITS, chat_per_s=0.5)          # quiet_s = 4 s
    tree = bot_tree([group_spec("alpha", [{"type": "echo"},
                                         {"type": "autoreply", "rules": [
                                             {"match": "g", "reply": "r", "chats": [-100900]}]}])],
                    limits=limits)
    tree.inject("alpha", [msg("alpha", 500, 1, "first")])
    tree.wait_sends("alpha", 1)
    # inside the start guard every send needs a grant, even to a fresh chat (501); a group
    # one always does
    tree.inject("alpha", [msg("alpha", 501, 1, "fresh"),
                          msg("alpha", -100900, 1, "g", kind="group", sender_id=5)])
    tree.wait_sends("alpha", 3)
    s = tree.settle("alpha")
    assert s["lease_sends"] == 0 and s["grant_requests"] >= 2
    assert_accounting(s)


def test_lease_tokens_zero_turns_leases_off(bot_tree):
    tree = bot_tree([group_spec("alpha", ECHO)], limits=dict(LIMITS, lease_tokens=0))
    tree.inject("alpha", [msg("alpha", 500, 1, "first")])
    tree.wait_sends("alpha", 1)
    tree.run_for(0.3)
    for i in range(3):
        tree.inject("alpha", [msg("alpha", 600 + i, 1, f"m{i}")])
        tree.wait_sends("alpha", 2 + i)
    s = tree.settle("alpha")
    assert s["lease_sends"] == 0 and s["lease_tokens"] == 0
    assert s["grant_requests"] == 4
    assert tree.service_stats("ratelimit")["leased_total"] == 0

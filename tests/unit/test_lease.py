"""Rate-limit leases: the limiter's side (RateLimitPolicy.lease/settle, TokenBucket.debit and
give_back) and the bot's side (system.lease.BotLease) on a hand-driven clock."""
from __future__ import annotations

import pytest

from actors.bot import Outbox
from system.lease import BotLease
from system.ratelimit_policy import RateLimitPolicy
from system.retry import RetryPolicy
from system.tokenbucket import TokenBucket


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def policy(clock, **kw):
    return RateLimitPolicy(clock=clock, jitter_s=(0.0, 0.0), **kw)


# ---- the bucket -------------------------------------------------------------------------------

def test_debit_takes_without_check_and_bottoms_out_at_empty():
    b = TokenBucket(1.0, 2, now=0.0)
    b.debit(1, now=0.0)
    assert b.available(0.0) == 1
    b.debit(5, now=0.0)
    assert b.tokens(0.0) == 0.0


def test_give_back_never_exceeds_burst_nor_lifts_a_penalty():
    b = TokenBucket(1.0, 3, now=0.0)
    assert b.take(3, now=0.0) == 3
    b.give_back(2, now=0.5)                 # 0.5 refilled + 2 returned
    assert b.tokens(0.5) == pytest.approx(2.5)
    b.give_back(10, now=0.5)
    assert b.tokens(0.5) == 3.0             # capped at the burst
    b.penalize(10.0)
    b.give_back(3, now=1.0)
    assert b.available(1.0) == 0            # still penalized


# ---- the policy -------------------------------------------------------------------------------

def test_lease_takes_account_tokens_and_is_capped_at_half_the_burst():
    clock = Clock()
    p = policy(clock, bot_per_s=10.0, bot_burst=10)
    assert p.lease("b", 64) == 5
    # the 5 leased are gone from what grant() can hand out now
    g = p.grant("b", {(c, "private"): 1 for c in range(1, 11)})
    assert g.total == 5
    assert p.stats()["leased_total"] == 5


def test_no_lease_while_the_account_is_penalized_or_for_zero():
    clock = Clock()
    p = policy(clock)
    assert p.lease("b", 0) == 0
    p.flood_wait("b", None, None, 3.0)
    assert p.lease("b", 4) == 0
    clock.t += 3.5
    assert p.lease("b", 4) == 4


def test_user_accounts_get_a_smaller_lease():
    p = policy(Clock(), user_account_burst=3)
    assert p.lease("u", 64, account_kind="user") == 1


def test_settle_debits_the_chats_spent_on_and_counts_them_as_granted():
    clock = Clock()
    p = policy(clock, chat_per_s=1.0, chat_burst=2)
    assert p.lease("b", 4) == 4
    assert p.settle("b", {(7, "private"): 1}, returned=3) == 1
    # chat 7 had its full burst of 2; one went on the lease, so one is left now
    assert p.grant("b", {(7, "private"): 2}).allowed == {(7, "private"): 1}
    st = p.stats()
    assert st["lease_used_total"] == 1
    assert st["granted_total"] == 2


def test_returned_tokens_come_back_to_the_account():
    clock = Clock()
    p = policy(clock, bot_per_s=10.0, bot_burst=10)
    assert p.lease("b", 5) == 5
    p.settle("b", {}, returned=5)
    assert p.grant("b", {(c, "private"): 1 for c in range(1, 11)}).total == 10


def test_quiet_s_is_the_time_an_empty_chat_bucket_takes_to_fill():
    assert policy(Clock(), chat_per_s=0.5, chat_burst=2).quiet_s == pytest.approx(4.0)


# ---- the bot's side ---------------------------------------------------------------------------

def outbox():
    return Outbox(queue_max=2000, max_in_flight=100, retry=RetryPolicy())


def queue(ob, chats):
    for c in chats:
        assert ob.offer(f"action to {c}", c)


def launched(lease, ob, room=10):
    """spend() and then what the bot's launch does: each chat's quiet period starts."""
    items = lease.spend(ob, {}, room=room)
    for item in items:
        lease.sent(item.chat)
    return [i.chat for i in items]


def started_lease(clock, tokens=4, lease_s=2.0, quiet_s=2.0):
    lease = BotLease(clock=clock)
    clock.t += quiet_s            # past the start guard
    lease.granted(tokens, lease_s, quiet_s)
    return lease


def test_nothing_is_spent_before_the_first_grant_or_during_the_start_guard():
    clock = Clock()
    lease = BotLease(clock=clock)
    ob = outbox()
    queue(ob, [1, 2])
    assert lease.spend(ob, {}, room=10) == []      # no grant yet
    lease.granted(4, 10.0, 2.0)
    assert lease.spend(ob, {}, room=10) == []      # a predecessor may have sent just now
    clock.t += 2.0
    assert [i.chat for i in lease.spend(ob, {}, room=10)] == [1, 2]


def test_one_send_per_fresh_private_chat_within_tokens_and_room():
    clock = Clock()
    lease = started_lease(clock, tokens=3)
    ob = outbox()
    queue(ob, [1, 1, 2, -100, 3, 4])
    kinds = {-100: "group"}
    items = lease.spend(ob, kinds, room=10)
    # newest chats first: group skipped, one per chat, 3 tokens; launched in queue order
    assert [i.chat for i in items] == [2, 3, 4]
    assert lease.tokens == 0
    assert ob.queued == 3                          # 1, 1 and the group's
    used, returned = lease.settle()
    assert sorted(used) == [(2, "", 1), (3, "", 1), (4, "", 1)]
    assert returned == 0
    lease2 = started_lease(Clock(), tokens=4)
    ob2 = outbox()
    queue(ob2, [5, 6, 7])
    assert len(lease2.spend(ob2, {}, room=2)) == 2


def test_a_chat_sent_to_recently_waits_for_a_grant():
    clock = Clock()
    lease = started_lease(clock, tokens=4, lease_s=10.0, quiet_s=2.0)
    lease.sent(1)                                  # granted the normal way just now
    clock.t += 0.5
    ob = outbox()
    queue(ob, [1, 2])
    assert launched(lease, ob) == [2]
    queue(ob, [2])
    clock.t += 1.4
    assert launched(lease, ob) == []     # 1 and 2 still quiet
    clock.t += 0.2
    assert launched(lease, ob) == [1]
    clock.t += 0.5
    assert launched(lease, ob) == [2]


def test_the_lease_expires_and_settle_gives_the_rest_back():
    clock = Clock()
    lease = started_lease(clock, tokens=4, lease_s=2.0)
    ob = outbox()
    queue(ob, [1])
    clock.t += 2.0
    assert lease.spend(ob, {}, room=10) == []
    assert lease.settle() == ((), 4)
    assert lease.tokens == 0


def test_a_flood_wait_ends_the_lease_and_blocks_spending_until_it_is_over():
    clock = Clock()
    lease = started_lease(clock, tokens=4, lease_s=60.0)
    lease.flood_wait(9, 5.0)
    assert lease.tokens == 0
    lease.granted(4, 60.0, 2.0)
    ob = outbox()
    queue(ob, [1, 9])
    clock.t += 4.9
    assert lease.spend(ob, {}, room=10) == []
    clock.t += 0.2
    assert [i.chat for i in lease.spend(ob, {}, room=10)] == [1]   # 9: quiet after the wait
    clock.t += 2.0
    assert [i.chat for i in lease.spend(ob, {}, room=10)] == [9]


def test_old_chats_are_forgotten_once_their_quiet_period_is_over():
    clock = Clock()
    lease = started_lease(clock, quiet_s=2.0)
    for c in range(50):
        lease.sent(c)
    clock.t += 2.5
    lease.sent(1000)
    assert list(lease.last_sent) == [1000]


def test_a_long_backlog_is_not_scanned_whole():
    clock = Clock()
    lease = started_lease(clock, tokens=4)
    ob = outbox()
    queue(ob, range(1, 1001))
    for c in range(1, 1001):
        lease.sent(c)                  # every chat just written to: none eligible
    queue(ob, [5000])
    assert [i.chat for i in lease.spend(ob, {}, room=10)] == [5000]


def test_nothing_is_remembered_before_the_first_grant_and_a_flood_then_keeps_the_guard():
    clock = Clock()
    lease = BotLease(clock=clock)
    for c in range(100):
        lease.sent(c)                  # no limiter answered yet: nothing to guard, nothing kept
    assert not lease.last_sent
    lease.flood_wait(5, 0.5)           # before any Grant (no limiter): must not crash
    lease.granted(4, 10.0, 2.0)        # the start guard still holds after the flood
    ob = outbox()
    queue(ob, [1])
    clock.t += 1.0
    assert lease.spend(ob, {}, room=10) == []
    clock.t += 1.0
    assert [i.chat for i in lease.spend(ob, {}, room=10)] == [1]


def test_renewal_is_wanted_when_the_lease_is_nearly_spent_or_half_over():
    clock = Clock()
    lease = BotLease(clock)
    assert not lease.wants_renewal()              # no Grant yet: nothing to renew
    lease.granted(4, 2.0, 0.5)
    clock.t += 1.0                                # past the start guard (quiet_s after start)
    lease.granted(4, 2.0, 0.5)
    assert not lease.wants_renewal()              # fresh: 4 tokens, 2 s left
    lease.tokens = 2
    clock.t += 0.9
    assert not lease.wants_renewal()              # 2 tokens, 1.1 s left
    clock.t += 0.2
    assert lease.wants_renewal()                  # less than half of it left
    lease.granted(4, 2.0, 0.5)
    lease.tokens = 1
    assert lease.wants_renewal()                  # one token left


def test_no_renewal_after_a_grant_without_a_lease_nor_while_spending_is_barred():
    clock = Clock()
    lease = BotLease(clock)
    clock.t += 1.0
    lease.granted(0, 0.0, 0.5)                    # leases off, or the account bucket empty
    clock.t += 5.0
    assert not lease.wants_renewal()
    lease.granted(4, 2.0, 0.5)
    lease.flood_wait(None, 30.0)                  # a FLOOD_WAIT ends the lease and bars it
    assert not lease.wants_renewal()
    clock.t += 31.0
    assert lease.wants_renewal()

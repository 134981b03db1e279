import math
import random
from collections import Counter, defaultdict

import pytest

from system.ratelimit_policy import Grant, RateLimitPolicy, chat_class


def policy(**kw):
    kw.setdefault("clock", lambda: 0.0)
    kw.setdefault("rng", random.Random(1))
    return RateLimitPolicy(**kw)


# ---- basic decisions ----------------------------------------------------------------------

def test_private_chat_burst_then_rate():
    p = policy(jitter_s=(0.0, 0.0))
    key = (5, "private")
    g = p.grant("b", {key: 10}, now=0.0)
    assert g.allowed == {key: 2} and g.waiting == 8
    assert g.retry_in == pytest.approx(1 / 0.95)
    assert p.grant("b", {key: 10}, now=g.retry_in * 0.99).allowed == {}
    assert p.grant("b", {key: 10}, now=g.retry_in).allowed == {key: 1}


def test_never_more_than_wanted_and_nothing_waiting_means_zero_retry():
    p = policy()
    g = p.grant("b", {(1, "private"): 1, (2, "private"): 0, (3, "private"): -4}, now=0.0)
    assert g == Grant({(1, "private"): 1}, 0.0, 0)
    assert p.grant("b", {}, now=0.0) == Grant()


def test_retry_in_includes_jitter_within_bounds():
    p = policy(jitter_s=(0.01, 0.05), rng=random.Random(5))
    retries = []
    for i in range(50):
        p2 = policy(jitter_s=(0.01, 0.05), rng=random.Random(i))
        g = p2.grant("b", {(1, "private"): 5}, now=0.0)
        retries.append(g.retry_in - 1 / 0.95)
    assert all(0.01 <= r <= 0.05 + 1e-12 for r in retries)
    assert max(retries) - min(retries) > 0.01
    assert p.grant("b", {(1, "private"): 1}, now=0.0).retry_in == 0.0


def test_group_limit_applies_in_addition_to_chat_limit():
    p = policy(jitter_s=(0.0, 0.0))
    group, private = (-100123, "group"), (7, "private")
    sent = Counter()
    for i in range(6000):                       # 60 s in 10 ms steps
        g = p.grant("b", {group: 100, private: 100}, now=i * 0.01)
        sent.update(g.allowed)
    assert sent[group] == 20                    # 2 burst + 19/min, i.e. <= 20 per minute
    assert sent[private] == 2 + 56              # 2 burst + 0.95/s


def test_channel_is_limited_like_a_group_and_kind_inferred_from_sign():
    assert chat_class(-1001, "channel") == "group"
    assert chat_class(-1001, "supergroup") == "group"
    assert chat_class(-55, None) == "group"
    assert chat_class(55, "") == "private"
    assert chat_class(55, "unknown") == "private"
    with pytest.raises(ValueError, match="unknown chat_kind"):
        chat_class(55, "secret")
    p = policy()
    with pytest.raises(ValueError, match="unknown chat_kind"):
        p.grant("b", {(1, "bogus"): 1}, now=0.0)


def test_same_chat_under_two_kinds_shares_its_tokens():
    p = policy()
    g = p.grant("b", {(9, "private"): 5, (9, None): 5}, now=0.0)
    assert g.total == 2


def test_bot_wide_limit_and_round_robin_across_calls():
    p = policy(jitter_s=(0.0, 0.0))
    wants = {(c, "private"): 1 for c in range(1, 101)}
    served_order = []
    now = 0.0
    g = p.grant("b", wants, now=now)
    assert g.total == 10                        # bot burst
    while True:
        served_order.extend(k[0] for k in g.allowed)
        for k in g.allowed:
            wants.pop(k)
        if not wants:
            break
        assert g.retry_in == pytest.approx(1 / 28)
        now += g.retry_in
        g = p.grant("b", wants, now=now)
        assert g.total == 1
    assert sorted(served_order) == list(range(1, 101))
    assert now == pytest.approx(90 / 28)        # 10 at once, then one per 1/28 s


def test_hot_chat_cannot_starve_others():
    """With the bot-wide limit binding, a chat wanting a million sends gets one send per round
    like everyone else."""
    p = policy(chat_per_s=1000, chat_burst=1000, bot_burst=10, jitter_s=(0.0, 0.0))
    hot = (1, "private")
    wants = {hot: 1_000_000}
    wants.update({(c, "private"): 10 for c in range(2, 11)})
    sent = Counter()
    now = 0.0
    for _ in range(400):
        g = p.grant("b", wants, now=now)
        for k, n in g.allowed.items():
            sent[k] += n
            wants[k] -= n
        if all(wants[(c, "private")] == 0 for c in range(2, 11)):
            break
        now += g.retry_in
    assert all(sent[(c, "private")] == 10 for c in range(2, 11))
    assert sent[hot] <= 11                      # its fair share, not the whole budget
    assert now < 100 / 28 + 0.1


def test_round_robin_within_one_call_spreads_the_budget():
    p = policy(chat_per_s=100, chat_burst=100, bot_burst=10)
    g = p.grant("b", {(1, "private"): 50, (2, "private"): 50, (3, "private"): 1}, now=0.0)
    # rounds: 1,2,3 | 1,2 | 1,2 | 1,2 | 1 -> budget of 10 spent
    assert g.allowed == {(1, "private"): 5, (2, "private"): 4, (3, "private"): 1}


def test_bots_are_independent():
    p = policy()
    assert p.grant("a", {(1, "private"): 1}, now=0.0).total == 1
    assert p.grant("b", {(1, "private"): 1}, now=0.0).total == 1


# ---- flood waits ------------------------------------------------------------------------

def test_flood_wait_on_chat_blocks_only_that_chat():
    p = policy(jitter_s=(0.0, 0.0))
    applied = p.flood_wait("b", 5, "private", 7, now=0.0)
    assert applied == 7
    g = p.grant("b", {(5, "private"): 1, (6, "private"): 1}, now=0.1)
    assert g.allowed == {(6, "private"): 1}
    assert g.retry_in == pytest.approx(7 - 0.1 + 1 / 0.95)
    assert p.grant("b", {(5, "private"): 1}, now=7.0).total == 0
    assert p.grant("b", {(5, "private"): 1}, now=7.0 + 1 / 0.95).total == 1
    st = p.stats()
    assert st["flood_waits"] == {"b": 1} and st["penalty_seconds"] == {"b": 7}


def test_flood_wait_on_group_blocks_group_bucket_too():
    p = policy(jitter_s=(0.0, 0.0))
    p.flood_wait("b", -100, "group", 3, now=0.0)
    assert p.grant("b", {(-100, "group"): 1}, now=2.9).total == 0
    assert p.grant("b", {(-100, "group"): 1}, now=30.0).total == 1


def test_flood_wait_without_chat_blocks_the_whole_bot_only():
    p = policy(jitter_s=(0.5, 0.5))
    assert p.flood_wait("b", None, None, 10, now=0.0) == 10.5
    assert p.grant("b", {(1, "private"): 1, (2, "private"): 1}, now=10.4).total == 0
    assert p.grant("other", {(1, "private"): 1}, now=1.0).total == 1
    assert p.grant("b", {(1, "private"): 1}, now=10.5 + 1 / 28).total == 1
    assert p.stats()["penalty_seconds"]["b"] == 10.5


def test_flood_wait_bad_seconds():
    p = policy()
    for bad in (-1, None, float("nan")):
        with pytest.raises(ValueError, match="seconds"):
            p.flood_wait("b", 1, "private", bad, now=0.0)


# ---- user accounts ----------------------------------------------------------------------

def test_user_account_uses_its_own_rate():
    p = policy(user_account_per_s=2.0, user_account_burst=1, chat_per_s=100, chat_burst=100,
               jitter_s=(0.0, 0.0))
    wants = {(c, "private"): 1 for c in range(1, 20)}
    g = p.grant("u", wants, now=0.0, account_kind="user")
    assert g.total == 1 and g.retry_in == pytest.approx(0.5)
    with pytest.raises(ValueError, match="account_kind"):
        p.grant("x", wants, now=0.0, account_kind="robot")


def test_switching_account_kind_keeps_a_bot_penalty():
    p = policy(jitter_s=(0.0, 0.0))
    p.flood_wait("u", None, None, 5, now=0.0, account_kind="user")
    assert p.grant("u", {(1, "private"): 1}, now=1.0, account_kind="bot").total == 0


# ---- memory -----------------------------------------------------------------------------

def test_prune_drops_only_idle_buckets():
    p = policy(jitter_s=(0.0, 0.0))
    p.grant("b", {(1, "private"): 1, (-2, "group"): 1}, now=0.0)
    p.flood_wait("b", 3, "private", 100, now=0.0)
    assert p.stats()["keys"] == {"accounts": 1, "chats": 3, "groups": 1, "fairness": 2}
    assert p.prune(now=0.01) == 0   # nothing has refilled yet
    assert p.prune(now=0.5) == 1    # the bot bucket (28/s) is full again
    assert p.stats()["keys"]["accounts"] == 0
    assert p.prune(now=10.0) == 3   # chats 1, -2 and group -2 are full; penalized chat 3 is not
    assert p.stats()["keys"] == {"accounts": 0, "chats": 1, "groups": 0, "fairness": 0}
    assert p.prune(now=1000.0) == 1
    assert p.tracked_keys() == 0 and p.stats()["pruned"] == 5


def test_memory_stays_bounded_with_many_chats():
    p = policy(prune_interval_s=10.0)
    peak = 0
    for i in range(20_000):                 # a new chat every 5 ms for 100 s
        p.grant("b", {(i + 1, "private"): 1}, now=i * 0.005)
        peak = max(peak, p.tracked_keys())
    assert p.stats()["granted_total"] > 0
    assert peak < 2_500                     # ~10 s of chats plus the refill time, not 20,000


def test_pruning_does_not_change_decisions():
    def run(prune_every):
        p = policy(rng=random.Random(9), prune_interval_s=prune_every)
        out = []
        rng = random.Random(4)
        for i in range(3000):
            wants = {(c, "private"): rng.randint(0, 2) for c in rng.sample(range(1, 8), 3)}
            wants[(-9, "group")] = rng.randint(0, 1)
            g = p.grant("b", wants, now=i * 0.05)
            out.append((sorted(g.allowed.items()), round(g.retry_in, 9)))
        return out, p.stats()["pruned"]
    eager, pruned = run(0.1)
    lazy, not_pruned = run(1e9)
    assert pruned > 0 and not_pruned == 0
    assert eager == lazy


def test_stats_shape():
    p = policy()
    p.grant("b", {(1, "private"): 3}, now=0.0)
    st = p.stats()
    assert st["grants"] == {"b": 2} and st["granted_total"] == 2
    assert st["waits"] == 1 and st["wait_seconds"] > 1.0
    assert st["flood_waits"] == {} and st["tracked_keys"] == 2


@pytest.mark.parametrize("kwargs", [{"bot_per_s": 0}, {"chat_burst": 0.5},
                                    {"group_per_min": -1}, {"jitter_s": (0.1, 0.0)},
                                    {"jitter_s": (-1, 0.0)}, {"user_account_per_s": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RateLimitPolicy(**kwargs)


# ---- fleet simulation against an independent referee ------------------------------------

# What Telegram is modelled to enforce (research notes: ~30/s per bot, ~1/s per chat with a
# short burst, 20/min per group). The referee uses GCRA (virtual scheduling), a different
# algorithm from the policy's token buckets, with its own parameters.
REF_BOT = (30.0, 10)          # per bot: 30/s, burst 10
REF_CHAT = (1.0, 3)           # per chat (every chat, groups too): 1/s, burst 3
REF_GROUP = (20.0 / 60, 3)    # per group/channel: 20/min, burst 3
TOLERANCE_S = 1e-6            # Telegram does not measure time to the microsecond


class Gcra:
    """Generic cell rate algorithm: a send at t conforms if t >= TAT - tau; TAT then advances by
    one emission interval. Non-conforming sends are what Telegram would answer FLOOD_WAIT."""

    def __init__(self, rate, burst):
        self.interval = 1.0 / rate
        self.tau = (burst - 1) * self.interval
        self.tat = -math.inf

    def send(self, t):
        if t + TOLERANCE_S < self.tat - self.tau:
            return False
        self.tat = max(self.tat, t) + self.interval
        return True


def referee(sends):
    """sends: list of (arrival_time, bot, chat_id, is_group). Returns the number of sends Telegram
    would have refused."""
    buckets = {}
    floods = 0
    for t, bot, chat, is_group in sorted(sends):
        keys = [("bot", bot, REF_BOT), ("chat", (bot, chat), REF_CHAT)]
        if is_group:
            keys.append(("group", (bot, chat), REF_GROUP))
        gates = []
        for kind, key, limits in keys:
            gate = buckets.get((kind, key))
            if gate is None:
                gate = buckets[(kind, key)] = Gcra(*limits)
            gates.append(gate)
        # a refused send does not consume quota: check all before committing
        if all(g.tat - g.tau <= t + TOLERANCE_S for g in gates):
            for g in gates:
                g.send(t)
        else:
            floods += 1
    return floods


def max_in_window(times, window):
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def simulate(p, bots=10, private_chats=50, groups=1, duration=60.0, step=0.01,
             latency=(0.0, 0.0), seed=0):
    """Every bot always wants far more than allowed; it calls grant() when its last retry_in
    has passed (rounded up to the next step, as a timer would), sends what it was allowed, and
    the sends reach Telegram after a random latency."""
    rng = random.Random(seed)
    wants = {(c, "private"): 1000 for c in range(1, private_chats + 1)}
    wants.update({(-1001000 - g, "group"): 1000 for g in range(groups)})
    names = [f"bot{i}" for i in range(bots)]
    wake = dict.fromkeys(names, 0.0)
    sends = []
    calls = 0
    for i in range(int(round(duration / step))):
        now = i * step
        for bot in names:
            if now + 1e-9 < wake[bot]:
                continue
            g = p.grant(bot, wants, now=now)
            calls += 1
            for (chat, kind), n in g.allowed.items():
                for _ in range(n):
                    sends.append((now + rng.uniform(*latency), bot, chat, kind == "group"))
            wake[bot] = now + (g.retry_in if g.retry_in > 0 else step)
    return sends, calls


def allowed_max(duration, private_chats, groups):
    """The most a bot may send in `duration` seconds under the referee's limits."""
    bot = REF_BOT[0] * duration + REF_BOT[1]
    chat = REF_CHAT[0] * duration + REF_CHAT[1]
    group = min(chat, REF_GROUP[0] * duration + REF_GROUP[1])
    return min(bot, private_chats * chat + groups * group)


def fidelity_report(sends, bots, duration, private_chats, groups):
    per_bot = Counter(s[1] for s in sends)
    per_chat = Counter((s[1], s[2]) for s in sends if not s[3])
    per_group = Counter((s[1], s[2]) for s in sends if s[3])
    group_times = defaultdict(list)
    for t, bot, chat, is_group in sends:
        if is_group:
            group_times[(bot, chat)].append(t)
    limit = allowed_max(duration, private_chats, groups)
    return {
        "floods": referee(sends),
        "fidelity_min": min(per_bot[f"bot{i}"] for i in range(bots)) / limit,
        "sends_per_bot": sorted(set(per_bot.values())),
        "allowed_per_bot": limit,
        "chat_spread": (min(per_chat.values()), max(per_chat.values())),
        "group_sends": sorted(set(per_group.values())),
        "group_max_per_60s": max(max_in_window(ts, 60.0) for ts in group_times.values()),
    }


def test_fleet_simulation_never_floods_and_uses_90_percent():
    p = RateLimitPolicy(clock=lambda: 0.0, rng=random.Random(42))
    sends, calls = simulate(p)
    rep = fidelity_report(sends, 10, 60.0, 50, 1)
    print("simulation (bot-bound, 50 chats + 1 group):", rep, "grant calls:", calls)
    assert rep["floods"] == 0
    assert rep["fidelity_min"] >= 0.90
    lo, hi = rep["chat_spread"]
    assert hi - lo <= 2                          # round-robin: chats share the bot's budget
    assert min(rep["group_sends"]) >= 18         # the group still gets ~its 20/min
    assert rep["group_max_per_60s"] <= 20
    assert p.stats()["flood_waits"] == {}


def test_fleet_simulation_chat_bound_with_network_jitter():
    """Few chats per bot (the per-chat limit binds) and 0-50 ms of latency variation between
    the grant and Telegram: the margin below Telegram's limits absorbs it."""
    p = RateLimitPolicy(clock=lambda: 0.0, rng=random.Random(7))
    sends, _ = simulate(p, private_chats=5, latency=(0.0, 0.05), seed=3)
    rep = fidelity_report(sends, 10, 60.0, 5, 1)
    print("simulation (chat-bound, 5 chats + 1 group, 50 ms jitter):", rep)
    assert rep["floods"] == 0
    assert rep["fidelity_min"] >= 0.90


def test_referee_catches_an_overeager_policy():
    """The simulation can fail: limits above Telegram's are caught by the referee."""
    greedy = RateLimitPolicy(bot_per_s=40, chat_per_s=1.2, clock=lambda: 0.0,
                             rng=random.Random(1))
    sends, _ = simulate(greedy, bots=2, duration=10.0)
    assert referee(sends) > 0
    greedy_group = RateLimitPolicy(group_per_min=30, clock=lambda: 0.0, rng=random.Random(1))
    sends, _ = simulate(greedy_group, bots=1, private_chats=0, duration=60.0)
    assert referee(sends) > 0

"""Rate-limit fidelity through the real actors: 10 bots flooded far beyond Telegram's limits share
one RateLimiterActor with its default policy; the stand-in backends accept everything and
timestamp every send. The sends are then replayed through a referee model of Telegram's limits
(`system.localtg.flood.FloodLimiter` with its defaults: 30/s per bot, 1/s per chat with burst
3, 20/min per group): zero violations allowed, and the bots must still use most of what is
allowed. In-process base only: real time, ~6 s.

"Allowed max" is Telegram's sustained bot limit over the window (30/s x T; with 60 private
chats per bot the bot limit, not the chats, binds). The referee's one-time bot burst (30) is
reported separately: that burst is a guess of the referee, and our policy deliberately does not
spend it (burst 5), so it is not the yardstick the assertion uses.
"""
import time
from collections import defaultdict

import pytest

from system.localtg.flood import FloodConfig, FloodLimiter
from tests.bots.helpers import assert_accounting, group_spec, msg, run_system

BOTS = 10
PRIVATE_CHATS = 60
PER_CHAT = 10
GROUP = -1001000
GROUP_MSGS = 40
SECONDS = 6.0


def flood(name):
    updates = [msg(name, 1000 + c, m, f"m{m}") for m in range(1, PER_CHAT + 1)
               for c in range(PRIVATE_CHATS)]
    updates += [msg(name, GROUP, m, f"x{m}", kind="group", sender_id=5)
                for m in range(1, GROUP_MSGS + 1)]
    return updates


@pytest.mark.parametrize("fleet", ["inprocess"], indirect=True)
def test_flooded_bots_stay_within_telegrams_limits(fleet, bot_tree):
    handlers = [{"type": "echo"},
                {"type": "autoreply", "rules": [{"match": "x", "reply": "r", "chats": [GROUP]}]}]
    names = [f"f{i}" for i in range(BOTS)]
    tree = bot_tree([group_spec(n, handlers) for n in names], limits={})   # policy defaults
    offered = {}
    starts = {}
    for n in names:
        updates = flood(n)
        offered[n] = len(updates)
        starts[n] = time.monotonic()
        tree.inject(n, updates)
    run_system(fleet, SECONDS)
    end = time.monotonic()

    sends = []          # (t, bot, chat, origin)
    for i, n in enumerate(names):
        for s in tree.records(n).sends:
            if s.t <= end:
                sends.append((s.t, i, s.chat_id, s.action.origin))
    sends.sort()

    clock = [0.0]
    referee = FloodLimiter(FloodConfig(), clock=lambda: clock[0])
    violations = []
    per_bot = defaultdict(int)
    per_chat = defaultdict(list)
    for t, bot, chat, origin in sends:
        clock[0] = t
        wait = referee.check_send(bot, chat, chat < 0)
        if wait is not None:
            violations.append((t, names[bot], chat, wait))
        per_bot[bot] += 1
        per_chat[(bot, chat)].append(int(origin.split(":")[1]))

    report = []
    fractions = []
    for i, n in enumerate(names):
        window = end - starts[n]
        sustained = 30.0 * window
        with_burst = FloodConfig().bot_burst + sustained
        fractions.append(per_bot[i] / sustained)
        group = len(per_chat[(i, GROUP)])
        report.append(f"{n}: {per_bot[i]} sends in {window:.2f}s = {per_bot[i] / window:.1f}/s, "
                      f"{per_bot[i] / sustained:.3f} of 30/s x T, {per_bot[i] / with_burst:.3f} "
                      f"of the referee max incl. its 30-send burst; group chat {group} "
                      f"(round-robin share of 61 chats)")
    print("\nrate-limit fidelity (actors, shared limiter, default policy):")
    print("\n".join(report))
    print(f"violations: {len(violations)}; achieved fraction min {min(fractions):.3f} "
          f"mean {sum(fractions) / len(fractions):.3f}; offered {sum(offered.values())} actions")

    assert not violations, f"{len(violations)} sends over Telegram's limits: {violations[:10]}"
    assert min(fractions) >= 0.8, report
    for (bot, chat), mids in per_chat.items():
        assert mids == sorted(mids), f"{names[bot]} chat {chat}: not FIFO: {mids}"
    for n in names:
        s = tree.stats(n)
        assert_accounting(s)
        assert s["accepted"] == offered[n] and s["dropped"] == 0

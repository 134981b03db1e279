"""RateLimiterActor: the one place that decides when each bot may send into each chat.

Why one actor for the whole fleet: Telegram's limits are per bot and per chat, and FLOOD_WAIT
penalties must reach every later decision for that key; one owner of all buckets
(`system.ratelimit_policy.RateLimitPolicy`) makes that trivially consistent. Why batched: a bot
asks once for its whole queue (`GrantRequest.wants` = (chat_id, chat_kind, n) per chat) and gets
one `Grant` back with how many may go per chat now and `retry_in`, the seconds until more could
be granted, so a bot sleeps on a timer instead of polling, and the limiter handles one message
per bot per grant cycle however many chats are waiting.

Messages: `GrantRequest` -> `Grant` to the sender (exactly one `policy.grant` call per request,
after `policy.settle` of what the bot sent on its lease, and before `policy.lease` of the next
one: at most `lease_tokens` for `lease_s` seconds; lease_tokens 0 turns leases off);
`FloodWaitReport` -> `policy.flood_wait` (penalty on the chat, or the whole bot when chat_id is
None); `BotStatsRequest` -> `BotStats(bot="ratelimit", counters=policy.stats())`.
Both the backend (which saw the error) and the bot (which retries the action) report a
FLOOD_WAIT; a report for the same (bot, chat) with no longer wait within `dup_window_s` of the
previous one is the same event and is counted once (`duplicate_flood_reports`), so the penalty
and the metrics are not doubled.
A request the policy rejects (unknown account kind) is answered with an empty grant and
`retry_in` = `bad_request_retry_s`, and logged: the limiter never crashes on a bot's input.

Args: RateLimitPolicy kwargs (bot_per_s, bot_burst, chat_per_s, chat_burst, group_per_min,
group_burst, user_account_per_s, user_account_burst, jitter_s, prune_interval_s, min_retry_s),
plus prune_s (periodic prune, 60), bad_request_retry_s (5), dup_window_s (1), lease_tokens (4)
and lease_s (2).
"""
from __future__ import annotations

import time
from collections import OrderedDict

from actors.base import FleetActor
from messages.backend import FloodWaitReport, Grant, GrantRequest
from messages.bot import BotStats, BotStatsRequest
from system.metrics_client import MetricsBuffer
from system.ratelimit_policy import RateLimitPolicy

POLICY_ARGS = ("bot_per_s", "bot_burst", "chat_per_s", "chat_burst", "group_per_min",
               "group_burst", "user_account_per_s", "user_account_burst", "jitter_s",
               "prune_interval_s", "min_retry_s")
KNOWN_KINDS = frozenset({"private", "group", "channel", "supergroup", ""})
EXTRA_ARGS = ("prune_s", "bad_request_retry_s", "dup_window_s", "lease_tokens", "lease_s")
MAX_LEASE = 64
MAX_RECENT_FLOODS = 10_000


class RateLimiterActor(FleetActor):
    kind = "ratelimit"

    def on_start(self, args):
        self.seen_bots: set = set()
        unknown = sorted(set(args) - set(POLICY_ARGS) - set(EXTRA_ARGS))
        if unknown:
            raise ValueError(f"ratelimit: unknown args {unknown} (expected one of "
                             f"{POLICY_ARGS + EXTRA_ARGS})")
        kwargs = {k: args[k] for k in POLICY_ARGS if k in args}
        if "jitter_s" in kwargs:
            kwargs["jitter_s"] = tuple(kwargs["jitter_s"])
        self.policy = RateLimitPolicy(**kwargs)
        self.bad_retry_s = float(args.get("bad_request_retry_s", 5.0))
        self.requests = 0
        self.bad_requests = 0
        self.dup_window_s = float(args.get("dup_window_s", 1.0))
        self.lease_tokens = int(args.get("lease_tokens", 4))
        self.lease_s = float(args.get("lease_s", 2.0))
        if not 0 <= self.lease_tokens <= MAX_LEASE or not self.lease_s > 0:
            raise ValueError(f"ratelimit: lease_tokens must be 0..{MAX_LEASE} and lease_s > 0, "
                             f"got {self.lease_tokens!r}, {self.lease_s!r}")
        self.recent_floods: OrderedDict = OrderedDict()   # (bot, chat) -> (monotonic, seconds)
        self.duplicate_reports = 0
        self.metrics = MetricsBuffer(self.path)
        self.every("prune", float(args.get("prune_s", 60.0)))
        if "metrics" in self.env:
            self.metrics.schedule(self)

    def on_GrantRequest(self, msg: GrantRequest, sender):
        if msg.bot not in self.seen_bots and len(self.seen_bots) < 10_000:
            self.seen_bots.add(msg.bot)   # series exist at 0 before the first penalty
            self.metrics.inc("tgfleet_flood_penalty_seconds_total", 0, bot=msg.bot)
        self.requests += 1
        policy = self.policy
        try:
            wants = self._per_key(msg.wants)
            # what the bot already sent on its lease counts before anything is decided for it
            used = policy.settle(msg.bot, self._per_key(msg.used), int(msg.returned),
                                 account_kind=msg.account_kind) \
                if msg.used or msg.returned else 0
            g = policy.grant(msg.bot, wants, account_kind=msg.account_kind)
            lease = policy.lease(msg.bot, min(int(msg.lease), self.lease_tokens),
                                 account_kind=msg.account_kind) if msg.lease > 0 else 0
        except (ValueError, TypeError) as exc:
            self.bad_requests += 1
            self.log.error("ratelimit: bad GrantRequest from %s: %s", msg.bot, exc)
            self.send(sender, Grant(msg.bot, (), self.bad_retry_s))
            return
        allowed = tuple((cid, kind, n) for (cid, kind), n in g.allowed.items())
        self.send(sender, Grant(msg.bot, allowed, g.retry_in, lease,
                                self.lease_s if lease else 0.0, policy.quiet_s))
        if g.total or used:
            self.metrics.inc("tgfleet_ratelimit_grants_total", g.total + used, bot=msg.bot)
        if g.waiting:
            self.metrics.observe("tgfleet_ratelimit_wait_seconds", g.retry_in, bot=msg.bot)

    @staticmethod
    def _per_key(rows) -> dict:
        """(chat_id, chat_kind, n) rows -> {(chat_id, kind): n}; an unknown kind becomes ""
        (inferred from the id by the policy)."""
        out: dict = {}
        for chat_id, chat_kind, n in rows:
            kind = chat_kind if chat_kind in KNOWN_KINDS else ""
            key = (int(chat_id), kind)
            out[key] = out.get(key, 0) + int(n)
        return out

    def _duplicate(self, msg: FloodWaitReport) -> bool:
        now = time.monotonic()
        key = (msg.bot, msg.chat_id)
        prev = self.recent_floods.get(key)
        if prev is not None and now - prev[0] < self.dup_window_s and msg.seconds <= prev[1]:
            return True
        self.recent_floods[key] = (now, msg.seconds)
        self.recent_floods.move_to_end(key)
        if len(self.recent_floods) > MAX_RECENT_FLOODS:
            self.recent_floods.popitem(last=False)
        return False

    def on_FloodWaitReport(self, msg: FloodWaitReport, sender):
        if self._duplicate(msg):
            self.duplicate_reports += 1
            return
        try:
            penalty = self.policy.flood_wait(msg.bot, msg.chat_id, msg.chat_kind or None,
                                             msg.seconds)
        except ValueError as exc:
            self.bad_requests += 1
            self.log.error("ratelimit: bad FloodWaitReport from %s: %s", msg.bot, exc)
            return
        self.log.info("ratelimit: %s flood wait %.1fs on chat %s (penalty %.2fs)", msg.bot,
                      msg.seconds, msg.chat_id, penalty)
        # the FLOOD_WAIT answer itself is counted once, by the backend that received it
        self.metrics.inc("tgfleet_flood_penalty_seconds_total", penalty, bot=msg.bot)

    def on_BotStatsRequest(self, msg: BotStatsRequest, sender):
        counters = dict(self.policy.stats(), requests=self.requests,
                        bad_requests=self.bad_requests,
                        duplicate_flood_reports=self.duplicate_reports)
        self.send(sender, BotStats(msg.request_id, "ratelimit", counters))

    def on_timer(self, name):
        if name == "prune":
            self.policy.prune()
            horizon = time.monotonic() - self.dup_window_s
            while self.recent_floods and next(iter(self.recent_floods.values()))[0] < horizon:
                self.recent_floods.popitem(last=False)
        elif name == "metrics":
            self.metrics.tick(self)

    def on_env_update(self, msg):
        if msg.key == "metrics":
            self.metrics.schedule(self)

    def on_stop(self):
        if hasattr(self, "metrics"):
            self.metrics.flush(self)

"""Telegram's flood limits as token buckets, deciding many sends per call.

Why: FLOOD_WAIT is expensive (the account is blocked for seconds, sometimes for every chat), so a
fleet should never trigger it, yet it should use nearly all the throughput Telegram allows. This
policy owns the limits Telegram applies to bots (undocumented; see
shared/research/telegram-libs.md, "Telegram's limits"):

* per bot (overall): ~30 msg/s           -> default 28/s, burst 10
* per chat (private, and every chat):    -> default 0.95/s, burst 2
  ~1 msg/s with short bursts
* per group/channel: 20 msg/min          -> default 19/min, burst 2, IN ADDITION to the per-chat
                                            bucket of that group
* per user account: no published limit   -> `user_account_per_s` (configurable) replaces the
                                            per-bot bucket for account_kind='user'; the per-chat
                                            and per-group buckets still apply

The defaults sit a few percent below Telegram's numbers: that margin absorbs network jitter
(sends granted at once can arrive closer together than they were granted) while keeping >= 90%
of the allowed throughput (28/30 = 93%).

Decisions are batched: `grant()` takes everything a bot wants to send right now, per chat, and
answers how many of each may go, sharing the bot-wide tokens round-robin across chats (least
recently served chat first, one send per chat per round) so one hot chat cannot starve the
others. It also answers `retry_in`, the time until the next token for any still-waiting chat plus
a random jitter (so many bots woken by the same clock do not stampede), so callers sleep instead
of polling.

Leases (`lease`, `settle`): a bot may hold a few account-wide tokens to spend without asking,
each on a private chat whose bucket is surely full (no send to it, and no penalty, for
`quiet_s`); it reports those sends with its next request, before anything else is decided for
it. The limiter stays the owner of every bucket; the lease only saves the round trip.

FLOOD_WAIT answers from Telegram still happen (limits vary per bot, other clients share the
account): `flood_wait()` penalizes the chat (or the whole bot) for the given seconds plus jitter.

Memory: buckets exist only for keys in use. A full, unpenalized bucket behaves exactly like a new
one, so `prune()` (also run automatically every `prune_interval_s` from `grant`) drops those
without changing any decision; memory stays proportional to recently active chats.
"""
from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

from system.tokenbucket import TokenBucket

PRIVATE = "private"
GROUP = "group"
_GROUP_KINDS = frozenset({"group", "channel", "supergroup"})
_UNKNOWN_KINDS = frozenset({None, "", "unknown"})
ACCOUNT_KINDS = ("bot", "user")


@dataclass(frozen=True, slots=True)
class Grant:
    """What may be sent now. `allowed` holds only chats with at least one send granted (use
    `allowed.get(key, 0)`); `retry_in` is 0 when nothing is left waiting, else the seconds until
    another send could be granted (jitter included); `waiting` counts sends still held back."""
    allowed: dict = field(default_factory=dict)
    retry_in: float = 0.0
    waiting: int = 0

    @property
    def total(self) -> int:
        return sum(self.allowed.values())


def chat_class(chat_id: int, chat_kind: Optional[str]) -> str:
    """'private' or 'group' (channels and supergroups are limited like groups). An unknown kind is
    inferred from the marked id: users are positive, groups and channels negative."""
    if chat_kind == PRIVATE:
        return PRIVATE
    if chat_kind in _GROUP_KINDS:
        return GROUP
    if chat_kind in _UNKNOWN_KINDS:
        return PRIVATE if chat_id > 0 else GROUP
    raise ValueError(f"unknown chat_kind {chat_kind!r} for chat {chat_id} "
                     f"(expected 'private', 'group', 'channel' or None)")


class RateLimitPolicy:
    def __init__(self, bot_per_s: float = 28.0, bot_burst: float = 10,
                 chat_per_s: float = 0.95, chat_burst: float = 2,
                 group_per_min: float = 19.0, group_burst: float = 2,
                 user_account_per_s: float = 10.0, user_account_burst: float = 3,
                 jitter_s: tuple = (0.0, 0.05),
                 clock: Callable[[], float] = time.monotonic,
                 rng: Optional[random.Random] = None,
                 prune_interval_s: float = 60.0,
                 min_retry_s: float = 0.001) -> None:
        for name, value in (("bot_per_s", bot_per_s), ("chat_per_s", chat_per_s),
                            ("group_per_min", group_per_min),
                            ("user_account_per_s", user_account_per_s)):
            if not value > 0:
                raise ValueError(f"RateLimitPolicy {name} must be > 0, got {value!r}")
        for name, value in (("bot_burst", bot_burst), ("chat_burst", chat_burst),
                            ("group_burst", group_burst),
                            ("user_account_burst", user_account_burst)):
            if not value >= 1:
                raise ValueError(f"RateLimitPolicy {name} must be >= 1, got {value!r}")
        lo, hi = jitter_s
        if not 0 <= lo <= hi:
            raise ValueError(f"RateLimitPolicy jitter_s must be (lo, hi) with 0 <= lo <= hi, "
                             f"got {jitter_s!r}")
        self._account_limits = {"bot": (float(bot_per_s), bot_burst),
                                "user": (float(user_account_per_s), user_account_burst)}
        self._chat_limits = (float(chat_per_s), chat_burst)
        self._group_limits = (float(group_per_min) / 60.0, group_burst)
        self.jitter_s = (float(lo), float(hi))
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self.prune_interval_s = prune_interval_s
        self.min_retry_s = min_retry_s

        self._accounts: dict[str, tuple[str, TokenBucket]] = {}   # bot -> (account_kind, bucket)
        self._chats: dict[tuple, TokenBucket] = {}                # (bot, chat_id) -> bucket
        self._groups: dict[tuple, TokenBucket] = {}               # (bot, chat_id) -> bucket
        # round-robin fairness: (bot, chat_id) -> sequence number of its last granted send
        self._served: dict[tuple, int] = {}
        self._seq = 0
        self._last_prune: Optional[float] = None

        self._grants = defaultdict(int)
        self._leased = defaultdict(int)       # bot -> account tokens handed out as leases
        self._lease_used = defaultdict(int)   # bot -> sends the bot made on its leases
        self._flood_waits = defaultdict(int)
        self._penalty_s = defaultdict(float)
        self._waits = 0
        self._wait_s = 0.0
        self._pruned = 0

    # ---- buckets -------------------------------------------------------------------------
    def _jitter(self) -> float:
        lo, hi = self.jitter_s
        return self._rng.uniform(lo, hi) if hi > 0 else 0.0

    def _account(self, bot: str, account_kind: str, now: float) -> TokenBucket:
        entry = self._accounts.get(bot)
        if entry is not None and entry[0] == account_kind:
            return entry[1]
        if account_kind not in self._account_limits:
            raise ValueError(f"unknown account_kind {account_kind!r} (expected one of "
                             f"{ACCOUNT_KINDS})")
        rate, burst = self._account_limits[account_kind]
        bucket = TokenBucket(rate, burst, clock=self._clock, now=now)
        if entry is not None and entry[1].penalized_until > now:
            bucket.penalize(entry[1].penalized_until)   # a kind switch must not lift a penalty
        self._accounts[bot] = (account_kind, bucket)
        return bucket

    def _chat(self, bot: str, chat_id: int, now: float) -> TokenBucket:
        key = (bot, chat_id)
        bucket = self._chats.get(key)
        if bucket is None:
            rate, burst = self._chat_limits
            bucket = self._chats[key] = TokenBucket(rate, burst, clock=self._clock, now=now)
        return bucket

    def _group(self, bot: str, chat_id: int, now: float) -> TokenBucket:
        key = (bot, chat_id)
        bucket = self._groups.get(key)
        if bucket is None:
            rate, burst = self._group_limits
            bucket = self._groups[key] = TokenBucket(rate, burst, clock=self._clock, now=now)
        return bucket

    # ---- deciding ------------------------------------------------------------------------
    def grant(self, bot: str, wants: dict, now: Optional[float] = None,
              account_kind: str = "bot") -> Grant:
        """Decide how many of the wanted sends (per (chat_id, chat_kind) key) may go at `now`."""
        now = self._clock() if now is None else now
        if self._last_prune is None:
            self._last_prune = now
        elif now - self._last_prune >= self.prune_interval_s:
            self.prune(now)

        account = self._account(bot, account_kind, now)
        # per chat: [key, wanted, chat capacity now, chat bucket, group bucket or None]
        rows = []
        claimed: dict[int, int] = {}   # the same chat listed under two kinds shares its tokens
        for key, wanted in wants.items():
            wanted = int(wanted)
            if wanted <= 0:
                continue
            chat_id, chat_kind = key
            chat = self._chat(bot, chat_id, now)
            group = self._group(bot, chat_id, now) if chat_class(chat_id, chat_kind) == GROUP \
                else None
            cap = chat.available(now)
            if group is not None and cap:
                cap = min(cap, group.available(now))
            cap = max(0, min(wanted, cap - claimed.get(chat_id, 0)))
            if cap:
                claimed[chat_id] = claimed.get(chat_id, 0) + cap
            rows.append([key, wanted, cap, chat, group, 0])
        if not rows:
            return Grant()

        # Round-robin over chats, least recently served first, one send per chat per round,
        # until the account's tokens or every chat's capacity runs out.
        served = self._served
        rows.sort(key=lambda r: served.get((bot, r[0][0]), -1))
        budget = account.available(now)
        active = [r for r in rows if r[2] > 0]
        while budget > 0 and active:
            still = []
            for row in active:
                if budget == 0:
                    break
                row[5] += 1
                budget -= 1
                self._seq += 1
                served[(bot, row[0][0])] = self._seq
                if row[5] < row[2]:
                    still.append(row)
            active = still

        allowed = {}
        total = 0
        for key, _wanted, _cap, chat, group, n in rows:
            if n:
                chat.take(n, now)
                if group is not None:
                    group.take(n, now)
                allowed[key] = n
                total += n
        if total:
            account.take(total, now)
        self._grants[bot] += total

        waiting = 0
        retry = math.inf
        for _key, wanted, _cap, chat, group, n in rows:
            if n < wanted:
                waiting += wanted - n
                t = chat.time_until(1, now)
                if group is not None:
                    t = max(t, group.time_until(1, now))
                retry = min(retry, t)
        if not waiting:
            return Grant(allowed, 0.0, 0)
        # a chat that could send is held back by the account bucket until it has a token again
        retry = max(retry, account.time_until(1, now), self.min_retry_s) + self._jitter()
        self._waits += 1
        self._wait_s += retry
        return Grant(allowed, retry, waiting)

    # ---- leases ---------------------------------------------------------------------------
    @property
    def quiet_s(self) -> float:
        """Seconds after its last send (or penalty) until a chat's bucket is surely full again:
        a bot may spend a lease on a private chat only after that long (see `lease`)."""
        rate, burst = self._chat_limits
        return burst / rate

    def lease(self, bot: str, n: int, now: Optional[float] = None,
              account_kind: str = "bot") -> int:
        """Reserve up to `n` of the bot's account-wide tokens for the bot to spend on its own,
        without asking, each on a PRIVATE chat it has not sent to (and that was not penalized)
        for `quiet_s`. Such a chat's bucket is full, so one send there needs only the account
        token, which is taken here. The bot reports what it spent (`settle`) with its next
        request, before anything else is decided for it, and gives back what it did not.
        Why: one round trip to the limiter per message was the largest per-message cost of a
        lightly loaded bot; a lease turns it into one round trip per `n` messages."""
        now = self._clock() if now is None else now
        if n <= 0:
            return 0
        account = self._account(bot, account_kind, now)
        # Tokens reserved now may all be spent later at once, on top of what the bucket lets
        # through then: at most half the burst keeps that within the bucket's own margin.
        got = account.take(min(n, max(1, int(account.burst // 2))), now)
        self._leased[bot] += got
        return got

    def settle(self, bot: str, used: dict, returned: int, now: Optional[float] = None,
               account_kind: str = "bot") -> int:
        """The bot spent `used` ((chat_id, chat_kind) -> n) from its lease and gives back
        `returned` unspent tokens. Debits the chat buckets (they were full when spent, so this
        only delays the debit) and counts the sends as granted. Returns the sends counted."""
        now = self._clock() if now is None else now
        total = 0
        for (chat_id, chat_kind), n in used.items():
            n = int(n)
            if n <= 0:
                continue
            self._chat(bot, chat_id, now).debit(n, now)
            # A bot leases private chats only; a group reported anyway pays its bucket too.
            if chat_class(chat_id, chat_kind) == GROUP:
                self._group(bot, chat_id, now).debit(n, now)
            self._seq += 1
            self._served[(bot, chat_id)] = self._seq
            total += n
        self._grants[bot] += total
        self._lease_used[bot] += total
        if returned > 0:
            self._account(bot, account_kind, now).give_back(int(returned), now)
        return total

    def flood_wait(self, bot: str, chat_id: Optional[int], chat_kind: Optional[str],
                   seconds: float, now: Optional[float] = None,
                   account_kind: Optional[str] = None) -> float:
        """Record a FLOOD_WAIT_X from Telegram: no sends to that chat (or, with chat_id None, from
        the whole bot) for `seconds` plus jitter. Returns the penalty applied, in seconds."""
        if seconds is None or not seconds >= 0:
            raise ValueError(f"flood_wait seconds must be >= 0, got {seconds!r}")
        now = self._clock() if now is None else now
        penalty = float(seconds) + self._jitter()
        until = now + penalty
        if chat_id is None:
            kind = account_kind
            if kind is None:
                entry = self._accounts.get(bot)
                kind = entry[0] if entry is not None else "bot"
            self._account(bot, kind, now).penalize(until)
        else:
            self._chat(bot, chat_id, now).penalize(until)
            if chat_class(chat_id, chat_kind) == GROUP:
                self._group(bot, chat_id, now).penalize(until)
        self._flood_waits[bot] += 1
        self._penalty_s[bot] += penalty
        return penalty

    # ---- memory and observation ----------------------------------------------------------
    def prune(self, now: Optional[float] = None) -> int:
        """Forget buckets that are full and unpenalized (identical to fresh ones) and the
        fairness records of chats without a bucket. Returns how many buckets were dropped."""
        now = self._clock() if now is None else now
        self._last_prune = now
        dropped = 0
        for table in (self._chats, self._groups):
            idle = [key for key, bucket in table.items() if bucket.is_idle(now)]
            for key in idle:
                del table[key]
            dropped += len(idle)
        idle_bots = [bot for bot, (_kind, bucket) in self._accounts.items()
                     if bucket.is_idle(now)]
        for bot in idle_bots:
            del self._accounts[bot]
        dropped += len(idle_bots)
        if len(self._served) > len(self._chats):
            self._served = {k: v for k, v in self._served.items() if k in self._chats}
        self._pruned += dropped
        return dropped

    def tracked_keys(self) -> int:
        return len(self._accounts) + len(self._chats) + len(self._groups)

    def stats(self) -> dict:
        return {
            "grants": dict(self._grants),
            "granted_total": sum(self._grants.values()),
            "leased_total": sum(self._leased.values()),
            "lease_used_total": sum(self._lease_used.values()),
            "waits": self._waits,
            "wait_seconds": self._wait_s,
            "flood_waits": dict(self._flood_waits),
            "penalty_seconds": dict(self._penalty_s),
            "tracked_keys": self.tracked_keys(),
            "keys": {"accounts": len(self._accounts), "chats": len(self._chats),
                     "groups": len(self._groups), "fairness": len(self._served)},
            "pruned": self._pruned,
        }

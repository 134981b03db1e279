"""The bot's side of a rate-limit lease: a few sends it may make without asking the limiter.

Why: at a few messages per second per bot, one GrantRequest/Grant round trip per message was the
largest per-message cost of a bot (two thespian messages and two actor turns, in two processes
on the processes base). With a lease the bot asks once per `tokens` messages.

The rule (`system.ratelimit_policy.RateLimitPolicy.lease`): the limiter took the lease's tokens
from the bot's account bucket; the bot may spend each on a PRIVATE chat it has not sent to, nor
seen penalized, for `quiet_s` seconds (that chat's bucket is then surely full), within
`lease_s`. Everything it spent and everything it did not goes back with its next GrantRequest
(`settle`), before the limiter decides anything else for it. A FLOOD_WAIT result ends the lease
at once. A freshly started bot spends nothing for `quiet_s`, since its predecessor may have sent
to any chat just before it died.

No thespian here: the bot actor owns one BotLease and calls it from its turns.
"""
from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from typing import Callable

from system.ratelimit_policy import PRIVATE, chat_class

MAX_REMEMBERED_CHATS = 100_000   # last-send times kept (older than quiet_s are dropped first)
MAX_SCAN = 64                    # queued chats looked at per spend() call


class BotLease:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.tokens = 0               # left to spend
        self.until = 0.0              # the lease ends (clock time)
        self.length = 0.0             # how long the last lease lasts (0: none was given)
        self.quiet_s = None           # unknown until the first Grant
        self.not_before = None        # no spending before this (start guard, FLOOD_WAIT)
        self.last_sent: OrderedDict = OrderedDict()   # chat -> last send (or penalty end)
        self.used: dict = {}          # (chat, kind) -> sends on leases, not yet reported

    # ---- from the limiter ------------------------------------------------------------------
    def granted(self, tokens: int, lease_s: float, quiet_s: float) -> None:
        """A Grant arrived: its lease replaces whatever was left (that went back with the
        request)."""
        now = self.clock()
        if quiet_s > 0:
            if self.quiet_s is None:     # the first Grant: the start guard
                self.not_before = max(self.not_before or 0.0, self.started + quiet_s)
            self.quiet_s = float(quiet_s)
        self.tokens = max(0, int(tokens)) if self.quiet_s is not None else 0
        self.until = now + float(lease_s)
        self.length = float(lease_s) if self.tokens else 0.0

    def wants_renewal(self) -> bool:
        """Worth asking for a fresh lease ahead of need: this one is nearly spent (one token or
        none left) or more than half over. Never when the last Grant gave none (leases off,
        the account's bucket empty: the next real request asks anyway) or while spending is
        barred (start guard, FLOOD_WAIT)."""
        now = self.clock()
        if self.length <= 0 or now < (self.not_before or 0.0):
            return False
        return self.tokens <= 1 or self.until - now < self.length / 2

    def settle(self) -> tuple:
        """For the next GrantRequest: (used rows (chat_id, chat_kind, n), returned tokens). The
        lease ends here: the bot holds none while its request is out."""
        used = tuple((chat, kind, n) for (chat, kind), n in self.used.items())
        returned = self.tokens
        self.used = {}
        self.tokens = 0
        return used, returned

    # ---- what the bot does -----------------------------------------------------------------
    def sent(self, chat: int) -> None:
        """Any send to CHAT (leased or granted) restarts its quiet period. Nothing is kept
        before the first Grant: without a limiter there is never a lease to guard, and with one
        the start guard covers everything sent before it answered."""
        if self.quiet_s is not None:
            self._mark(chat, self.clock())

    def flood_wait(self, chat, seconds: float) -> None:
        """A FLOOD_WAIT result: the lease ends, nothing is spent until the wait is over, and that
        chat stays quiet from then on."""
        now = self.clock()
        end = now + max(0.0, float(seconds))
        self.tokens = 0
        self.not_before = max(self.not_before or 0.0, end)
        if chat is not None and self.quiet_s is not None:
            self._mark(chat, end)

    def spend(self, outbox, kinds: dict, room: int) -> list:
        """Take from OUTBOX at most one queued item per eligible chat, up to `room` and the
        tokens left; returns the items. The caller launches them, and `sent` starts each chat's
        quiet period."""
        now = self.clock()
        if self.tokens <= 0 or room <= 0 or now >= self.until or self.quiet_s is None \
                or now < (self.not_before or 0.0):
            return []
        quiet = self.quiet_s
        last = self.last_sent
        items = []
        # Newest chats first (a fresh chat was usually queued last) and only so many of them:
        # a long backlog of chats waiting for their grant must not make every turn a full scan.
        for chat in list(itertools.islice(reversed(outbox.queues), MAX_SCAN)):
            if self.tokens <= 0 or len(items) >= room:
                break
            kind = kinds.get(chat, "")
            try:
                if chat_class(chat, kind) != PRIVATE:
                    continue
            except ValueError:
                continue
            t = last.get(chat)
            if t is not None and now - t < quiet:
                continue
            got = outbox.take(chat, 1)
            if not got:
                continue
            items.extend(got)
            self.tokens -= 1
            key = (chat, kind)
            self.used[key] = self.used.get(key, 0) + 1
        items.sort(key=lambda item: item.seq)    # launched in the order they were queued
        return items

    # ---- memory ----------------------------------------------------------------------------
    def _mark(self, chat, t: float) -> None:
        last = self.last_sent
        prev = last.get(chat)
        last[chat] = t if prev is None else max(prev, t)
        last.move_to_end(chat)
        # forget chats whose quiet period is over (oldest first), and bound the rest
        horizon = self.clock() - self.quiet_s
        while last:
            if next(iter(last.values())) >= horizon:
                break
            last.popitem(last=False)
        while len(last) > MAX_REMEMBERED_CHATS:
            last.popitem(last=False)

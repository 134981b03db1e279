"""RelayHandler: passes users' questions to a peer (e.g. another bot) and its answers back.

Config: {"peer": chat_id of the peer, "timeout_s": 60, "max_pending": 1000}

A private text message from a user becomes SendText(peer, text), and the user joins a FIFO of
pending requesters. A message arriving from the peer (chat_id == peer) is an answer: it goes to
the oldest pending requester as SendText(requester_chat, text). The peer is assumed to answer in
order, one message per question; that is all a chat can tell us without reply ids.

Why bounded and timed out: a peer that never answers must not make the queue (memory) grow, and
a very late answer must not reach the wrong user. Requests older than `timeout_s` are dropped
(counted) in `tick` and before matching an answer; past `max_pending` the oldest request is
dropped (counted). An answer with nobody waiting is counted and ignored.
"""
from __future__ import annotations

from collections import deque

from messages.telegram import SendText

from .base import Handler, caused_by, is_from_self


class RelayHandler(Handler):
    name = "relay"

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        peer = self.config.get("peer")
        if not isinstance(peer, int) or isinstance(peer, bool) or peer == 0:
            raise ValueError(f"relay: 'peer' must be a non-zero chat id, got {peer!r}")
        timeout = self.config.get("timeout_s", 60)
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"relay: timeout_s must be a number > 0, got {timeout!r}")
        max_pending = self.config.get("max_pending", 1000)
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"relay: max_pending must be an int >= 1, got {max_pending!r}")
        self.peer = peer
        self.timeout_s = float(timeout)
        self.max_pending = max_pending
        self._pending: deque = deque()   # (requester_chat_id, asked_at, update_id)
        self.relayed = 0
        self.answered = 0
        self.expired = 0
        self.overflow = 0
        self.unmatched = 0

    def _expire(self, now: float) -> None:
        pending = self._pending
        while pending and now - pending[0][1] > self.timeout_s:
            pending.popleft()
            self.expired += 1

    def handle(self, update, ctx):
        if not update.text or is_from_self(update, ctx):
            return []
        if update.chat_id == self.peer:
            self._expire(ctx.now)
            if not self._pending:
                self.unmatched += 1
                ctx.log.info("bot %s: relay answer from %s with nobody waiting",
                             ctx.bot, self.peer)
                return []
            requester, _asked_at, _origin = self._pending.popleft()
            self.answered += 1
            return [SendText(chat_id=requester, text=update.text, **caused_by(update))]
        if update.chat_kind != "private":
            return []
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.overflow += 1
        self._pending.append((update.chat_id, ctx.now, update.update_id))
        self.relayed += 1
        return [SendText(chat_id=self.peer, text=update.text, **caused_by(update))]

    def needs_tick(self):
        return bool(self._pending)

    def tick(self, now, ctx):
        self._expire(now)
        return []

    def pending(self) -> int:
        return len(self._pending)

    def stats(self) -> dict:
        return {"pending": len(self._pending), "relayed": self.relayed,
                "answered": self.answered, "expired": self.expired,
                "overflow": self.overflow, "unmatched": self.unmatched}

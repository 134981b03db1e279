"""ForwardHandler: copies every message from source chats to target chats, media groups intact.

Config:
    {"sources": [chat_id, ...], "targets": [chat_id, ...], "group_window_s": 0.5,
     "max_pending_groups": 100, "dedup_size": 10000}

Why media groups are buffered: an album arrives as several messages sharing a `grouped_id`, one
update each. Forwarding them one by one splits the album in the target and costs N sends of the
target chat's rate budget instead of one. So parts are held until `group_window_s` has passed
since the last part arrived, then `tick` emits ONE ForwardMessages per target carrying all ids in
message order. Call `tick(math.inf, ctx)` at shutdown to flush everything still pending.

Why its own dedup: the pipeline dedups update ids, but a message can come back under a new
update (after a reconnect, a GetDifference, or a second account seeing the same channel); a
bounded LRU of (chat_id, message_id) guarantees a message is never forwarded twice.

Bounded buffer: at most `max_pending_groups` albums wait at once (see memory notes: a long-running
bot must not grow without bound). An album arriving when the buffer is full is dropped, counted
and logged, and its later parts are dropped too rather than forwarded as a broken half-album.

Messages with neither text nor media (service messages) cannot be forwarded and are skipped;
messages sent by this account are skipped so a misconfiguration cannot loop (a chat may not be
both a source and a target).
"""
from __future__ import annotations

from collections import OrderedDict

from messages.telegram import ForwardMessages
from system.lru import BoundedLRU

from .base import Handler, caused_by, is_from_self


def _chat_ids(value, what: str) -> tuple:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in value):
        raise ValueError(f"forward: '{what}' must be a non-empty list of chat ids, got {value!r}")
    return tuple(dict.fromkeys(value))   # unique, order kept


class _Pending:
    __slots__ = ("ids", "last_at", "origin", "received_at")

    def __init__(self, origin: str, received_at: float) -> None:
        self.ids: list[int] = []
        self.last_at = 0.0
        self.origin = origin
        self.received_at = received_at


class ForwardHandler(Handler):
    name = "forward"

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.sources = frozenset(_chat_ids(cfg.get("sources"), "sources"))
        self.targets = _chat_ids(cfg.get("targets"), "targets")
        both = self.sources.intersection(self.targets)
        if both:
            raise ValueError(f"forward: chats {sorted(both)} are both source and target "
                             f"(would forward in a loop)")
        window = cfg.get("group_window_s", 0.5)
        if not isinstance(window, (int, float)) or window < 0:
            raise ValueError(f"forward: group_window_s must be a number >= 0, got {window!r}")
        self.group_window_s = float(window)
        max_pending = cfg.get("max_pending_groups", 100)
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"forward: max_pending_groups must be an int >= 1, "
                             f"got {max_pending!r}")
        self.max_pending_groups = max_pending
        self._dedup = BoundedLRU(int(cfg.get("dedup_size", 10000)))
        self._dropped_groups = BoundedLRU(1000)   # albums being dropped, so their tail is too
        self._pending: OrderedDict = OrderedDict()  # (chat_id, grouped_id) -> _Pending
        self.forwarded = 0          # ForwardMessages actions emitted
        self.groups_flushed = 0
        self.duplicates = 0
        self.dropped_groups = 0
        self.dropped_messages = 0
        self.skipped_empty = 0

    def _forward(self, chat_id: int, ids: tuple, origin: str, received_at: float) -> list:
        actions = [ForwardMessages(from_chat_id=chat_id, message_ids=ids, to_chat_id=target,
                                   origin=origin, received_at=received_at)
                   for target in self.targets]
        self.forwarded += len(actions)
        return actions

    def handle(self, update, ctx):
        if update.chat_id not in self.sources or is_from_self(update, ctx):
            return []
        if not update.text and update.media is None:
            self.skipped_empty += 1
            return []
        if self._dedup.seen((update.chat_id, update.message_id)):
            self.duplicates += 1
            return []
        if update.grouped_id is None:
            return self._forward(update.chat_id, (update.message_id,), **caused_by(update))

        key = (update.chat_id, update.grouped_id)
        group = self._pending.get(key)
        if group is None:
            if key in self._dropped_groups:
                self.dropped_messages += 1
                return []
            if len(self._pending) >= self.max_pending_groups:
                self._dropped_groups.seen(key)
                self.dropped_groups += 1
                self.dropped_messages += 1
                ctx.log.warning("bot %s: forward buffer full (%d albums), dropping album %s of "
                                "chat %s", ctx.bot, self.max_pending_groups, update.grouped_id,
                                update.chat_id)
                return []
            group = self._pending[key] = _Pending(update.update_id, update.received_at)
        group.ids.append(update.message_id)
        group.last_at = ctx.now
        return []

    def needs_tick(self):
        return bool(self._pending)

    def tick(self, now, ctx):
        ready = [key for key, group in self._pending.items()
                 if now - group.last_at >= self.group_window_s]
        actions = []
        for key in ready:
            group = self._pending.pop(key)
            self.groups_flushed += 1
            actions.extend(self._forward(key[0], tuple(sorted(group.ids)), group.origin,
                                         group.received_at))
        return actions

    def stats(self) -> dict:
        return {
            "forwarded": self.forwarded,
            "groups_flushed": self.groups_flushed,
            "pending_groups": len(self._pending),
            "duplicates": self.duplicates,
            "dropped_groups": self.dropped_groups,
            "dropped_messages": self.dropped_messages,
            "skipped_empty": self.skipped_empty,
            "dedup": self._dedup.stats(),
        }

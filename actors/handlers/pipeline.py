"""Pipeline: runs one bot's handlers over its updates, isolating their failures.

Why a separate, actor-free class: the bot actor only shuttles messages; everything that decides
(dedup, handler order, error isolation, state, counters) lives here and is tested without
thespian. Per update: dedup on update_id (a bounded LRU, so redelivered updates are answered once
and memory stays fixed), then every handler in order. A handler that raises is logged with the
bot and handler name and counted, and the pipeline continues with the next handler and the next
update: one buggy custom handler must not silence the others or kill the actor.

Also: `tick(now)` drives time-based handler work, `on_event(topic, payload)` delivers event-bus
events to subscribed handlers, `cleanup(now)` expires per-user state (call it every few minutes,
it returns stats for the log), `stats()` for monitoring.

Actions a handler returns without `origin` get the causing update's `origin` and `received_at`
filled in, so tracing and latency work even for careless custom handlers; anything that is not
an `Action` is dropped and counted as an error of that handler.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from typing import Callable, Optional

from messages.telegram import Action, IncomingMessage, update_key
from system.lru import BoundedLRU
from system.ttlstate import TTLState

from .base import Handler, HandlerContext


class Pipeline:
    def __init__(self, bot: str, self_id: int, handlers: list[Handler],
                 dedup_size: int = 10000, state_ttl_s: float = 3600.0, state_max: int = 10000,
                 clock: Callable[[], float] = time.time,
                 state_clock: Callable[[], float] = time.monotonic,
                 log: Optional[logging.Logger] = None) -> None:
        for h in handlers:
            if not isinstance(h, Handler):
                raise ValueError(f"pipeline for bot {bot!r}: {h!r} is not a Handler")
        self.bot = bot
        self.handlers = list(handlers)
        self._clock = clock
        self.log = log if log is not None else logging.getLogger(f"tgfleet.bot.{bot}")
        self.dedup = BoundedLRU(dedup_size)
        self.state = TTLState(state_ttl_s, state_max, clock=state_clock)
        self.ctx = HandlerContext(bot=bot, self_id=self_id or 0, state=self.state,
                                  now=0.0, log=self.log)
        self.updates = 0
        self.dedup_hits = 0
        self.handler_errors: Counter = Counter()
        self.actions: Counter = Counter()

    # ---- running handlers ------------------------------------------------------------------
    def _collect(self, handler: Handler, result, update: Optional[IncomingMessage],
                 out: list) -> None:
        if result is None:
            return
        if not isinstance(result, (list, tuple)):
            self.handler_errors[handler.name] += 1
            self.log.error("bot %s: handler %s returned %s, not a list of actions",
                           self.bot, handler.name, type(result).__name__)
            return
        for action in result:
            if not isinstance(action, Action):
                self.handler_errors[handler.name] += 1
                self.log.error("bot %s: handler %s returned a non-action %r (dropped)",
                               self.bot, handler.name, action)
                continue
            if update is not None and not action.origin:
                action = dataclasses.replace(action, origin=update.update_id,
                                             received_at=update.received_at)
            self.actions[type(action).__name__] += 1
            out.append(action)

    def _failed(self, handler: Handler, what: str) -> None:
        self.handler_errors[handler.name] += 1
        self.log.exception("bot %s: handler %s failed in %s", self.bot, handler.name, what)

    def process(self, update: IncomingMessage) -> list[Action]:
        """Dedup the update, run every handler, return all their actions in handler order."""
        self.updates += 1
        key = update_key(update)
        if self.dedup.seen(key):
            self.dedup_hits += 1
            return []
        ctx = self.ctx
        ctx.now = self._clock()
        out: list[Action] = []
        for handler in self.handlers:
            try:
                result = handler.handle(update, ctx)
            except Exception:
                self._failed(handler, f"handle({update.update_id})")
                continue
            self._collect(handler, result, update, out)
        return out

    def tick(self, now: Optional[float] = None) -> list[Action]:
        """Time-based handler work (e.g. flushing media groups); `now` is time.time()-based."""
        ctx = self.ctx
        ctx.now = self._clock() if now is None else now
        out: list[Action] = []
        for handler in self.handlers:
            try:
                result = handler.tick(ctx.now, ctx)
            except Exception:
                self._failed(handler, "tick")
                continue
            self._collect(handler, result, None, out)
        return out

    def needs_tick(self) -> bool:
        """True while some handler has time-based work waiting (see Handler.needs_tick)."""
        for handler in self.handlers:
            try:
                if handler.needs_tick():
                    return True
            except Exception:
                self._failed(handler, "needs_tick")
                return True
        return False

    def on_event(self, topic: str, payload: dict) -> list[Action]:
        """Deliver an event-bus event to the handlers subscribed to `topic` (or to '*')."""
        ctx = self.ctx
        ctx.now = self._clock()
        out: list[Action] = []
        for handler in self.handlers:
            try:
                topics = handler.subscriptions()
                if topic not in topics and "*" not in topics:
                    continue
                result = handler.on_event(topic, payload, ctx)
            except Exception:
                self._failed(handler, f"on_event({topic})")
                continue
            self._collect(handler, result, None, out)
        return out

    def subscriptions(self) -> tuple[str, ...]:
        """Every topic some handler wants, for the bot actor to subscribe to."""
        topics: dict[str, None] = {}
        for handler in self.handlers:
            try:
                topics.update(dict.fromkeys(handler.subscriptions()))
            except Exception:
                self._failed(handler, "subscriptions")
        return tuple(topics)

    # ---- memory and observation --------------------------------------------------------------
    def cleanup(self, now: Optional[float] = None) -> dict:
        """Expire per-user state (now is on the state clock, monotonic by default); returns
        what was removed and the sizes after, for the periodic memory log line."""
        expired = self.state.cleanup(now)
        return {"bot": self.bot, "expired_states": expired, "state": self.state.stats(),
                "dedup": self.dedup.stats()}

    def stats(self) -> dict:
        handlers = {}
        for handler in self.handlers:
            try:
                handlers[handler.name] = handler.stats()
            except Exception:
                self._failed(handler, "stats")
        return {
            "bot": self.bot,
            "updates": self.updates,
            "dedup_hits": self.dedup_hits,
            "handler_errors": dict(self.handler_errors),
            "actions": dict(self.actions),
            "state_size": len(self.state),
            "dedup_size": len(self.dedup),
            "handlers": handlers,
        }

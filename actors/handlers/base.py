"""What a handler is, and what it may touch.

Why handlers are plain classes returning actions: a handler decides, the bot actor and its
backend act. A handler never holds or calls a Telegram client; it returns `Action` dataclasses
from `messages/telegram.py`, which the pipeline collects and the bot hands to its backend (with
rate limiting, retries and batching there). That keeps handlers deterministic and testable
without actors, threads or network, and lets one handler run unchanged on every backend.

Contract:
* `handle(update, ctx)` for each new, deduplicated `IncomingMessage`; returns a list of actions.
* `tick(now, ctx)` periodically, for time-based work (flushing buffered media groups, dropping
  timed-out requests).
* `on_event(topic, payload, ctx)` for event-bus events on the topics in `subscriptions()`.
* Every action caused by an update carries `origin=update.update_id` and
  `received_at=update.received_at` (`caused_by(update)` builds those two fields) so tracing and
  end-to-end latency work.
* A handler may raise: the pipeline logs and counts it and goes on with the next handler.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from messages.telegram import Action, IncomingMessage


@dataclass(slots=True)
class HandlerContext:
    """Everything a handler may use besides its own config. `state` is the bot's per-user
    TTLState (`ctx.state.get(user_id)`, `ctx.state.update(user_id, step=2)`); `now` is
    time.time() for the call; `self_id` is the bot's own user id (0 if unknown)."""
    bot: str
    self_id: int = 0
    state: Any = None
    now: float = 0.0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("tgfleet.handlers"))


def caused_by(update: IncomingMessage) -> dict:
    """The tracing fields every action caused by `update` must carry."""
    return {"origin": update.update_id, "received_at": update.received_at}


def is_from_self(update: IncomingMessage, ctx: HandlerContext) -> bool:
    """Our own message (sent by this account): echoing or relaying it would loop."""
    return update.outgoing or (ctx.self_id != 0 and update.sender_id == ctx.self_id)


class Handler:
    """Base class of every handler (builtin or custom, see `actors.handlers.load_handler`).
    `name` identifies it in logs and stats; a config key "name" overrides it per instance."""

    name: str = "handler"

    def __init__(self, config: Optional[dict] = None) -> None:
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ValueError(f"{type(self).__name__} config must be a dict, "
                             f"got {type(config).__name__}")
        self.config = config
        if "name" in config:
            self.name = str(config["name"])

    def handle(self, update: IncomingMessage, ctx: HandlerContext) -> list[Action]:
        raise NotImplementedError(f"{type(self).__name__}.handle")

    def tick(self, now: float, ctx: HandlerContext) -> list[Action]:
        return []

    def needs_tick(self) -> bool:
        """Whether `tick` has work waiting. The bot ticks only while some handler says yes, so
        an idle bot does not wake up five times a second for nothing (on the processes base
        each wake-up costs its process real CPU). A handler that overrides `tick` without
        overriding this is ticked all the time, as before."""
        return type(self).tick is not Handler.tick

    def on_event(self, topic: str, payload: dict, ctx: HandlerContext) -> list[Action]:
        return []

    def subscriptions(self) -> tuple[str, ...]:
        return ()

    def stats(self) -> dict:
        """Handler-specific counters (drops, pending buffers); {} if it keeps none."""
        return {}

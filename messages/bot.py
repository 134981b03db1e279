"""Asking a bot (and the services it uses) for its counters.

Why a message and not only metrics: tests, `ctl` and operators need the bot's exact accounting
now (an action the bot accepted must end as sent or as a counted drop with a reason), without a
metrics exporter and a scrape in between. `RateLimiterActor` and `EventBus` answer the same
request with their own counters (`bot` is then "ratelimit" / "eventbus"), so one request type
serves every actor on a bot's path.
"""
from __future__ import annotations

from dataclasses import dataclass
from messages import fastpickle


@dataclass(frozen=True, slots=True)
class BotStatsRequest:
    """Anyone -> a bot (or the rate limiter / event bus): answer `BotStats` to the sender."""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class BotStats:
    """`counters` is a plain dict of numbers and small dicts; for a bot it holds at least
    accepted, sent, published, dropped, dropped_by_reason, in_queue, in_flight, retry_pending
    (see `actors.bot.BotActor.counters` for the whole list and the accounting invariant)."""
    request_id: str
    bot: str
    counters: dict


fastpickle.install(globals())   # messages/fastpickle.py: same bytes, less work

"""Telegram's flood limits for bots, as token buckets, answered with FLOOD_WAIT_X.

Why: tgfleet's own rate limiter must be refereed by something that behaves like Telegram.
Telegram documents (loosely) about 30 messages/s per bot overall, about 1 message/s per
chat with short bursts tolerated, and 20 messages/min per group. A send that would exceed
any bucket is refused with rpc_error 420 FLOOD_WAIT_X, X = whole seconds until the bucket
has a token again (at least 1), and counted per account. Refused sends consume nothing.
Limits can be switched off (overhead benchmarks) and changed at run time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class FloodConfig:
    enabled: bool = True
    bot_per_second: float = 30.0
    bot_burst: float = 30.0
    chat_per_second: float = 1.0
    chat_burst: float = 3.0
    group_per_minute: float = 20.0
    group_burst: float = 20.0


@dataclass
class FloodStats:
    total: int = 0
    by_account: dict = field(default_factory=dict)
    by_kind: dict = field(default_factory=dict)


class FloodLimiter:
    """check_send(bot_id, chat_key, is_group, n) -> None or seconds to wait (int >= 1)."""

    def __init__(self, config: FloodConfig | None = None, clock=time.monotonic):
        self.config = config or FloodConfig()
        self.stats = FloodStats()
        self._buckets: dict = {}  # key -> [tokens, last_time]
        self._clock = clock

    def _bucket(self, key, rate: float, burst: float, now: float):
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = [burst, now]
        else:
            b[0] = min(burst, b[0] + (now - b[1]) * rate)
            b[1] = now
        return b

    def check_send(self, bot_id: int, chat_key, is_group: bool, n: int = 1):
        cfg = self.config
        if not cfg.enabled:
            return None
        now = self._clock()
        specs = [(("bot", bot_id), cfg.bot_per_second, cfg.bot_burst, n, "bot"),
                 (("chat", bot_id, chat_key), cfg.chat_per_second, cfg.chat_burst, 1, "chat")]
        if is_group:
            rate = cfg.group_per_minute / 60.0
            specs.append((("group", bot_id, chat_key), rate, cfg.group_burst, 1, "group"))
        wait = 0.0
        kind = None
        buckets = []
        for key, rate, burst, cost, name in specs:
            b = self._bucket(key, rate, burst, now)
            buckets.append((b, cost))
            if b[0] < cost:
                w = (cost - b[0]) / rate if rate > 0 else 3600.0
                if w > wait:
                    wait, kind = w, name
        if kind is not None:
            st = self.stats
            st.total += 1
            st.by_account[bot_id] = st.by_account.get(bot_id, 0) + 1
            st.by_kind[kind] = st.by_kind.get(kind, 0) + 1
            return max(1, math.ceil(wait))
        for b, cost in buckets:
            b[0] -= cost
        return None

    def snapshot(self) -> dict:
        cfg = self.config
        return {
            "limits_on": cfg.enabled,
            "violations_total": self.stats.total,
            "by_account": {str(k): v for k, v in self.stats.by_account.items()},
            "by_kind": dict(self.stats.by_kind),
            "limits": {"bot_per_second": cfg.bot_per_second, "chat_per_second": cfg.chat_per_second,
                       "chat_burst": cfg.chat_burst, "group_per_minute": cfg.group_per_minute},
        }

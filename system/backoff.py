"""Exponential backoff with jitter and a reset after a stable period (Akka's BackoffSupervisor).

Used between restarts of a crashed child: the first restart is fast (recovery under a second),
a crash loop slows down exponentially, jitter keeps a fleet from restarting in lock-step, and a
child that stayed up for `reset_after_s` starts again from the base delay.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 0.05
    factor: float = 2.0
    max_s: float = 10.0
    jitter: float = 0.2            # +/- fraction of the delay
    reset_after_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    last_start: float = 0.0

    def next_delay(self, now: float) -> float:
        """Delay before the next restart; call when a failure is seen."""
        if self.last_start and now - self.last_start >= self.reset_after_s:
            self.attempt = 0
        raw = min(self.max_s, self.base_s * (self.factor ** self.attempt))
        self.attempt += 1
        spread = raw * self.jitter
        return max(0.0, raw + self.rng.uniform(-spread, spread))

    def started(self, now: float) -> None:
        self.last_start = now

"""A token bucket: `burst` tokens of capacity, refilled continuously at `rate_per_s`.

Why this shape: Telegram's limits ("~1 msg/s per chat, short bursts tolerated") are naturally a
rate plus a burst. A bucket answers the three questions a sender has: how many may go now
(`take`), how many could go (`available`), and how long until n could go (`time_until`, which
lets callers sleep exactly instead of polling). `penalize` models FLOOD_WAIT: no tokens before
the given time, and the bucket restarts empty then, so the first send after a flood wait is
paced at the normal rate instead of bursting into a chat Telegram has just throttled.

Time is passed in (`now`) or read from an injected clock, so tests drive it deterministically.
A bucket that is full and not penalized behaves exactly like a new one (`is_idle`), which is what
lets the rate-limit policy drop idle buckets without changing any decision.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional

# Whole tokens are counted with a tiny tolerance so that refilling to exactly n tokens in floating
# point (n - 1e-15) still grants n; 1e-9 of a token is far below any clock's resolution.
_EPS = 1e-9


class TokenBucket:
    __slots__ = ("rate_per_s", "burst", "_clock", "_tokens", "_last", "penalized_until")

    def __init__(self, rate_per_s: float, burst: float,
                 clock: Callable[[], float] = time.monotonic, now: Optional[float] = None) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"TokenBucket rate_per_s must be > 0, got {rate_per_s!r}")
        if not burst >= 1:
            raise ValueError(f"TokenBucket burst must be >= 1, got {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = self.burst                       # a new bucket starts full
        self._last = clock() if now is None else now    # time _tokens was computed for
        self.penalized_until = -math.inf

    def _refill(self, now: Optional[float]) -> float:
        if now is None:
            now = self._clock()
        if now > self._last:   # a clock that goes backwards never adds (or removes) tokens
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
            self._last = now
        return now

    def tokens(self, now: Optional[float] = None) -> float:
        """Fractional tokens at `now` (0 while penalized)."""
        now = self._refill(now)
        return 0.0 if now < self.penalized_until else self._tokens

    def available(self, now: Optional[float] = None) -> int:
        """Whole tokens that could be taken at `now`."""
        return int(math.floor(self.tokens(now) + _EPS))

    def take(self, n: int = 1, now: Optional[float] = None) -> int:
        """Take up to `n` whole tokens; returns how many were granted (0..n)."""
        if n <= 0:
            return 0
        granted = min(int(n), self.available(now))
        if granted:
            self._tokens = max(0.0, self._tokens - granted)
        return granted

    def debit(self, n: int, now: Optional[float] = None) -> None:
        """Take `n` tokens that were already spent elsewhere (a lease the caller settles
        late): no availability check, the bucket only bottoms out at empty."""
        if n > 0:
            self._refill(now)
            self._tokens = max(0.0, self._tokens - n)

    def give_back(self, n: int, now: Optional[float] = None) -> None:
        """Return `n` taken but unspent tokens. Never above the burst, and nothing while
        penalized: a penalty empties the bucket and that must hold."""
        if n > 0:
            now = self._refill(now)
            if now >= self.penalized_until:
                self._tokens = min(self.burst, self._tokens + n)

    def time_until(self, n: int = 1, now: Optional[float] = None) -> float:
        """Seconds from `now` until `n` tokens are available (0 if they already are); inf if
        n exceeds the burst, which can never be available at once."""
        if n > self.burst + _EPS:
            return math.inf
        now = self._refill(now)
        if now < self.penalized_until:
            # restarts empty at penalized_until (see penalize), then refills
            return (self.penalized_until - now) + n / self.rate_per_s
        missing = n - self._tokens
        if missing <= _EPS:
            return 0.0
        return missing / self.rate_per_s

    def penalize(self, until_ts: float) -> None:
        """No tokens before `until_ts`; the bucket restarts empty at that time."""
        if until_ts <= self.penalized_until:
            return   # an earlier, longer penalty already covers this one
        self.penalized_until = until_ts
        self._tokens = 0.0
        if until_ts > self._last:
            self._last = until_ts
        # else: the clock has already passed until_ts; tokens refill from _last as usual

    def is_idle(self, now: Optional[float] = None) -> bool:
        """Full and not penalized: indistinguishable from a fresh bucket, safe to forget."""
        now = self._refill(now)
        return now >= self.penalized_until and self._tokens >= self.burst - _EPS

    def __repr__(self) -> str:
        return (f"TokenBucket(rate_per_s={self.rate_per_s}, burst={self.burst}, "
                f"tokens={self._tokens:.3f}, penalized_until={self.penalized_until})")

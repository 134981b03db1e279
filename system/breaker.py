"""Circuit breaker: stop calling something that keeps failing, probe it again later.

Why: when a backend (a Telegram connection, a DC, a peer) fails repeatedly, retrying every
queued action multiplies the load and the log noise and delays everything behind it. After
`failure_threshold` consecutive failures the breaker opens and `allow()` answers False at once;
after `reset_timeout_s` it lets `half_open_max` probe calls through; a probe success closes it, a
probe failure opens it again for another timeout.

States: 'closed' (normal), 'open' (rejecting), 'half_open' (probing). The open -> half_open
transition is lazy: it happens when `allow()` or `state` is consulted after the timeout, so the
breaker needs no timer. The clock is injected for deterministic tests.
"""
from __future__ import annotations

import time
from typing import Callable

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, failure_threshold: int = 5, reset_timeout_s: float = 10.0,
                 half_open_max: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be an int >= 1, got {failure_threshold!r}")
        if not reset_timeout_s >= 0:
            raise ValueError(f"reset_timeout_s must be >= 0, got {reset_timeout_s!r}")
        if not isinstance(half_open_max, int) or half_open_max < 1:
            raise ValueError(f"half_open_max must be an int >= 1, got {half_open_max!r}")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = float(reset_timeout_s)
        self.half_open_max = half_open_max
        self._clock = clock
        self._state = CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes = 0          # calls allowed through while half-open
        self.failures = 0         # totals, for stats
        self.successes = 0
        self.opens_total = 0
        self.rejected = 0

    @property
    def state(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._state = HALF_OPEN
            self._probes = 0
        return self._state

    def allow(self) -> bool:
        """May a call be made now? (While half-open, each True reserves one probe slot.)"""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and self._probes < self.half_open_max:
            self._probes += 1
            return True
        self.rejected += 1
        return False

    def record_success(self) -> None:
        self.successes += 1
        state = self.state
        if state == HALF_OPEN:
            self._state = CLOSED
            self._probes = 0
        if state != OPEN:   # a late success of a call made before opening changes nothing
            self._consecutive = 0

    def record_failure(self) -> None:
        self.failures += 1
        state = self.state
        if state == HALF_OPEN:
            self._open()
        elif state == CLOSED:
            self._consecutive += 1
            if self._consecutive >= self.failure_threshold:
                self._open()
        # OPEN: a late failure of a call made before opening does not extend the timeout

    def _open(self) -> None:
        self._state = OPEN
        self._opened_at = self._clock()
        self._consecutive = 0
        self._probes = 0
        self.opens_total += 1

    def stats(self) -> dict:
        return {
            "state": self.state,
            "failures": self.failures,
            "successes": self.successes,
            "consecutive_failures": self._consecutive,
            "opens_total": self.opens_total,
            "rejected": self.rejected,
        }

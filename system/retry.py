"""Retry policy: which failures to retry, and how long to wait before each retry.

Why: transient failures (network drops, timeouts, FLOOD_WAIT) should be retried, with delays
that grow exponentially so a struggling server is not hammered, capped so a retry still happens
in reasonable time, and jittered (+/- a fraction) so many bots failing together do not retry in
lockstep. Fatal failures (an RPC error that will fail the same way again, an invalid peer) are
never retried: retrying them only burns rate-limit tokens. For 'flood_wait' Telegram says how
long to wait; callers should wait max(that, delay(attempt)) and report it to the rate-limit
policy (`wait_for` does the max).

`attempt` is the number of attempts already made (1 after the first failure).
"""
from __future__ import annotations

import random
from typing import Optional

ERROR_KINDS = frozenset({"flood_wait", "network", "timeout", "rpc_fatal", "peer_invalid"})
FATAL_KINDS = frozenset({"rpc_fatal", "peer_invalid"})


class RetryPolicy:
    def __init__(self, base_s: float = 0.5, factor: float = 2.0, max_s: float = 30.0,
                 max_attempts: int = 5, jitter: float = 0.2,
                 rng: Optional[random.Random] = None) -> None:
        if not base_s >= 0:
            raise ValueError(f"base_s must be >= 0, got {base_s!r}")
        if not factor >= 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if not max_s >= base_s:
            raise ValueError(f"max_s must be >= base_s, got {max_s!r} < {base_s!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be a fraction in [0, 1), got {jitter!r}")
        self.base_s = float(base_s)
        self.factor = float(factor)
        self.max_s = float(max_s)
        self.max_attempts = max_attempts
        self.jitter = float(jitter)
        self._rng = rng if rng is not None else random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the next try after `attempt` attempts: base * factor**(attempt-1)
        times a random factor in [1 - jitter, 1 + jitter], never above max_s."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt!r}")
        try:
            raw = self.base_s * self.factor ** (attempt - 1)
        except OverflowError:
            raw = self.max_s
        raw = min(raw, self.max_s)
        if self.jitter:
            raw *= 1.0 + self._rng.uniform(-self.jitter, self.jitter)
        return max(0.0, min(raw, self.max_s))

    def should_retry(self, attempt: int, error_kind: str) -> bool:
        """Retry after `attempt` failed attempts with this kind of error?"""
        if error_kind not in ERROR_KINDS:
            raise ValueError(f"unknown error_kind {error_kind!r}; expected one of "
                             f"{sorted(ERROR_KINDS)}")
        if error_kind in FATAL_KINDS:
            return False
        return attempt < self.max_attempts

    def wait_for(self, attempt: int, server_wait_s: float = 0.0) -> float:
        """The wait before retrying: the backoff delay, or longer if the server asked for more
        (FLOOD_WAIT_X / retry_after)."""
        return max(self.delay(attempt), float(server_wait_s or 0.0))

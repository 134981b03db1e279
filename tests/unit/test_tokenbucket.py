import math

import pytest

from system.tokenbucket import TokenBucket


def test_starts_full_and_grants_partially(clock):
    b = TokenBucket(2.0, 3, clock=clock)
    assert b.available() == 3
    assert b.take(5) == 3            # never more than available
    assert b.take(1) == 0
    assert b.take(0) == 0 and b.take(-2) == 0


def test_refills_at_rate_up_to_burst(clock):
    b = TokenBucket(2.0, 3, clock=clock)
    b.take(3)
    clock.advance(0.5)
    assert b.available() == 1
    clock.advance(100)
    assert b.available() == 3        # capped at the burst


def test_explicit_now_overrides_clock():
    b = TokenBucket(1.0, 1, clock=lambda: 0.0, now=0.0)
    assert b.take(1, now=0.0) == 1
    assert b.take(1, now=0.5) == 0
    assert b.take(1, now=1.0) == 1


def test_time_until(clock):
    b = TokenBucket(4.0, 2, clock=clock)
    assert b.time_until(2) == 0.0
    b.take(2)
    assert b.time_until(1) == pytest.approx(0.25)
    assert b.time_until(2) == pytest.approx(0.5)
    assert b.time_until(3) == math.inf   # more than the burst can never be available


@pytest.mark.parametrize("rate", [0.95, 19 / 60, 28.0, 3.3])
def test_time_until_is_exact_enough_to_take(rate):
    """Waking exactly time_until later must get the token (no float off-by-epsilon), and
    waking a little earlier must not."""
    b = TokenBucket(rate, 2, clock=lambda: 0.0, now=0.0)
    now = 0.0
    b.take(2, now)
    for _ in range(500):
        wait = b.time_until(1, now)
        assert wait > 0
        assert b.available(now + wait * 0.999) == 0
        now += wait
        assert b.take(1, now) == 1


def test_clock_going_backwards_adds_nothing(clock):
    b = TokenBucket(1.0, 2, clock=clock)
    b.take(2)
    clock.advance(-5)
    assert b.available() == 0
    clock.advance(5.5)               # back to the start + 0.5
    assert b.available() == 0
    clock.advance(0.5)
    assert b.available() == 1


def test_penalize_blocks_then_restarts_empty(clock):
    b = TokenBucket(2.0, 4, clock=clock)
    start = clock()
    b.penalize(start + 3)
    assert b.available() == 0 and b.take(1) == 0
    assert b.time_until(1) == pytest.approx(3.5)
    clock.advance(2.9)
    assert b.take(1) == 0
    clock.advance(0.1)               # penalty over, but the bucket restarts empty
    assert b.available() == 0
    clock.advance(0.5)
    assert b.take(4) == 1


def test_shorter_penalty_does_not_shorten_longer(clock):
    b = TokenBucket(10.0, 1, clock=clock)
    b.penalize(clock() + 10)
    b.penalize(clock() + 2)
    clock.advance(5)
    assert b.available() == 0
    assert b.penalized_until == pytest.approx(clock() + 5)


def test_is_idle(clock):
    b = TokenBucket(1.0, 2, clock=clock)
    assert b.is_idle()
    b.take(1)
    assert not b.is_idle()
    clock.advance(1)
    assert b.is_idle()
    b.penalize(clock() + 1)
    assert not b.is_idle()
    clock.advance(3)
    assert b.is_idle()


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (1, 0), (1, 0.5)])
def test_bad_arguments(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, clock=lambda: 0.0)

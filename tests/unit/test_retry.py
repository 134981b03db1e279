import random

import pytest

from system.retry import RetryPolicy


def test_exponential_without_jitter_is_capped():
    rp = RetryPolicy(base_s=0.5, factor=2.0, max_s=30.0, jitter=0.0)
    assert [rp.delay(a) for a in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_jitter_stays_within_fraction_and_cap():
    rp = RetryPolicy(base_s=1.0, factor=2.0, max_s=30.0, jitter=0.2, rng=random.Random(7))
    for attempt in range(1, 5):
        nominal = 2.0 ** (attempt - 1)
        samples = [rp.delay(attempt) for _ in range(200)]
        assert all(nominal * 0.8 <= s <= nominal * 1.2 for s in samples)
        assert max(samples) - min(samples) > nominal * 0.2      # it does vary
    assert all(rp.delay(10) <= 30.0 for _ in range(200))        # jitter never exceeds the cap


def test_seeded_rng_is_deterministic():
    a = RetryPolicy(rng=random.Random(3))
    b = RetryPolicy(rng=random.Random(3))
    assert [a.delay(i) for i in range(1, 6)] == [b.delay(i) for i in range(1, 6)]


def test_huge_attempt_does_not_overflow():
    rp = RetryPolicy(jitter=0.0)
    assert rp.delay(10_000) == 30.0


def test_should_retry_transient_until_max_attempts():
    rp = RetryPolicy(max_attempts=5)
    for kind in ("network", "timeout", "flood_wait"):
        assert [rp.should_retry(a, kind) for a in range(1, 7)] == [True] * 4 + [False] * 2


@pytest.mark.parametrize("kind", ["rpc_fatal", "peer_invalid"])
def test_fatal_kinds_never_retry(kind):
    assert RetryPolicy(max_attempts=100).should_retry(1, kind) is False


def test_unknown_error_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown error_kind"):
        RetryPolicy().should_retry(1, "disk_full")


def test_wait_for_respects_server_wait():
    rp = RetryPolicy(base_s=0.5, jitter=0.0)
    assert rp.wait_for(1, server_wait_s=12) == 12
    assert rp.wait_for(3, server_wait_s=0) == 2.0


@pytest.mark.parametrize("kwargs", [{"base_s": -1}, {"factor": 0.5}, {"max_s": 0.1},
                                    {"max_attempts": 0}, {"jitter": 1.0}, {"jitter": -0.1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_attempt_below_one_is_rejected():
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().delay(0)

import pytest

from system.breaker import CircuitBreaker


def test_opens_after_threshold_consecutive_failures(clock):
    cb = CircuitBreaker(failure_threshold=3, reset_timeout_s=10, clock=clock)
    assert cb.state == "closed" and cb.allow()
    cb.record_failure()
    cb.record_failure()
    assert cb.state == "closed" and cb.allow()
    cb.record_failure()
    assert cb.state == "open"
    assert cb.allow() is False and cb.allow() is False
    st = cb.stats()
    assert st["opens_total"] == 1 and st["failures"] == 3 and st["rejected"] == 2


def test_success_resets_the_consecutive_count(clock):
    cb = CircuitBreaker(failure_threshold=3, clock=clock)
    for _ in range(10):
        cb.record_failure()
        cb.record_failure()
        cb.record_success()
    assert cb.state == "closed" and cb.stats()["opens_total"] == 0


def test_half_open_probe_success_closes(clock):
    cb = CircuitBreaker(failure_threshold=1, reset_timeout_s=10, half_open_max=1, clock=clock)
    cb.record_failure()
    clock.advance(9.99)
    assert cb.allow() is False and cb.state == "open"
    clock.advance(0.01)
    assert cb.state == "half_open"
    assert cb.allow() is True          # the one probe
    assert cb.allow() is False         # no second probe while the first is out
    cb.record_success()
    assert cb.state == "closed" and cb.allow() and cb.allow()


def test_half_open_probe_failure_reopens_for_a_full_timeout(clock):
    cb = CircuitBreaker(failure_threshold=2, reset_timeout_s=5, clock=clock)
    cb.record_failure()
    cb.record_failure()
    clock.advance(5)
    assert cb.allow()
    cb.record_failure()
    assert cb.state == "open" and cb.stats()["opens_total"] == 2
    clock.advance(4.9)
    assert not cb.allow()
    clock.advance(0.1)
    assert cb.allow()


def test_half_open_max_allows_several_probes(clock):
    cb = CircuitBreaker(failure_threshold=1, reset_timeout_s=1, half_open_max=2, clock=clock)
    cb.record_failure()
    clock.advance(1)
    assert [cb.allow() for _ in range(3)] == [True, True, False]


def test_late_results_while_open_change_nothing(clock):
    cb = CircuitBreaker(failure_threshold=1, reset_timeout_s=10, clock=clock)
    cb.record_failure()
    clock.advance(6)
    cb.record_failure()                # a call started before the breaker opened
    cb.record_success()
    assert cb.state == "open"
    clock.advance(4)                   # timeout counted from the first opening
    assert cb.state == "half_open" and cb.stats()["opens_total"] == 1


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"reset_timeout_s": -1},
                                    {"half_open_max": 0}, {"failure_threshold": 2.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)

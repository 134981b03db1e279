"""IdleCollector (system/idle_gc.py): collects what is waiting when asked at an idle moment, the
middle generation when CPython's next young collection would have, and nothing otherwise."""
import gc
import re

import pytest

from system.config import ConfigError, load_config
from system.idle_gc import IdleCollector


@pytest.fixture
def quiet_gc():
    """No automatic collection during a test (thresholds out of reach), restored after."""
    saved = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10_000_000, saved[1], saved[2])
    yield saved
    gc.set_threshold(*saved)


def allocate(n):
    return [{"i": i} for i in range(n)]


def test_nothing_is_collected_below_the_mark(quiet_gc):
    collector = IdleCollector(young_at=1_000)
    keep = allocate(100)
    before = gc.get_count()[0]
    assert collector.before_sleep() is None
    assert gc.get_count()[0] >= before
    assert collector.stats == {"young": 0, "middle": 0, "full": 0, "seconds": 0.0}
    del keep


def test_young_objects_are_collected_once_enough_wait(quiet_gc):
    collector = IdleCollector(young_at=200, min_interval_s=0)
    keep = allocate(500)
    assert gc.get_count()[0] >= 500
    assert collector.before_sleep() == 0
    assert gc.get_count()[0] < 200
    assert collector.stats["young"] == 1 and collector.stats["middle"] == 0
    assert collector.stats["seconds"] > 0
    del keep


def test_the_middle_generation_is_collected_when_it_falls_due(quiet_gc):
    collector = IdleCollector(young_at=200, min_interval_s=0)
    assert collector.middle_after == quiet_gc[1]
    gc.collect(1)                                   # middle count back to 0
    for _ in range(collector.middle_after):
        gc.collect(0)                               # each young collection counts one
    keep = allocate(500)
    assert gc.get_count()[1] >= collector.middle_after
    assert collector.before_sleep() == 1
    assert gc.get_count()[1] == 0
    assert collector.stats["middle"] == 1 and collector.stats["young"] == 0
    del keep


def middle_collections(n):
    for _ in range(n):
        gc.collect(1)                               # each middle collection counts one


def test_a_full_collection_at_most_every_full_every_s(quiet_gc):
    collector = IdleCollector(young_at=200, min_interval_s=0, full_every_s=0)
    middle_collections(collector.old_after + 1)
    keep = allocate(500)
    assert collector.before_sleep() == 2
    assert gc.get_count()[2] == 0 and collector.stats["full"] == 1
    middle_collections(collector.old_after + 1)
    more = allocate(500)
    assert collector.before_sleep() == 2            # full_every_s = 0: due again
    slow = IdleCollector(young_at=200, min_interval_s=0, full_every_s=3600)
    middle_collections(slow.old_after + 1)
    most = allocate(500)
    assert slow.before_sleep() in (0, 1)            # not before an hour
    del keep, more, most


def test_a_full_collection_cpython_ran_counts(quiet_gc):
    collector = IdleCollector(young_at=200, min_interval_s=0, full_every_s=0)
    middle_collections(collector.old_after + 1)
    gc.collect()                                    # CPython's (or anyone's) full collection
    middle_collections(collector.old_after + 1)
    keep = allocate(500)
    collector.full_every_s = 3600
    assert collector.before_sleep() in (0, 1)       # it saw that one: the next is an hour away
    assert collector.stats["full"] == 0
    del keep


def test_collections_are_spaced_by_the_minimum_interval(quiet_gc):
    collector = IdleCollector(young_at=200, min_interval_s=60)
    keep = allocate(500)
    assert collector.before_sleep() == 0
    more = allocate(500)
    assert collector.before_sleep() is None         # a busy runner that idles between two
    assert collector.stats["young"] == 1            # deliveries does not collect every time
    del keep, more


def test_off_at_zero_and_when_the_collector_is_disabled(quiet_gc):
    keep = allocate(500)
    assert IdleCollector(young_at=0).before_sleep() is None
    gc.disable()
    try:
        assert IdleCollector(young_at=200).before_sleep() is None
    finally:
        gc.enable()
    with pytest.raises(ValueError, match="young_at must be >= 0"):
        IdleCollector(young_at=-1)
    del keep


def test_the_config_key_is_checked():
    assert load_config(None, env={})["system"]["idle_gc_young"] == 150
    assert load_config(None, env={"TGFLEET_SYSTEM_IDLE_GC_YOUNG": "0"})["system"]["idle_gc_young"] == 0
    with pytest.raises(ConfigError, match=re.escape("system.idle_gc_young: expected 0 to 1000000,")):
        load_config(None, env={"TGFLEET_SYSTEM_IDLE_GC_YOUNG": "-5"})

import pytest

from system.lru import BoundedLRU


def test_seen_inserts_then_hits():
    lru = BoundedLRU(3)
    assert lru.seen("a") is False
    assert lru.seen("a") is True
    assert len(lru) == 1
    assert lru.stats() == {"size": 1, "max_size": 3, "hits": 1, "misses": 1, "evictions": 0}


def test_evicts_oldest_past_max_size():
    lru = BoundedLRU(2)
    for key in ("a", "b", "c"):
        assert lru.seen(key) is False
    assert len(lru) == 2
    assert "a" not in lru and "b" in lru and "c" in lru
    assert lru.stats()["evictions"] == 1
    assert lru.seen("a") is False          # forgotten: a miss again


def test_hit_refreshes_recency():
    lru = BoundedLRU(2)
    lru.seen("a")
    lru.seen("b")
    assert lru.seen("a") is True           # a is now the most recent
    lru.seen("c")                          # evicts b, not a
    assert "a" in lru and "b" not in lru


def test_contains_does_not_insert_or_count():
    lru = BoundedLRU(2)
    assert "x" not in lru
    assert len(lru) == 0 and lru.stats()["misses"] == 0


def test_memory_stays_bounded():
    lru = BoundedLRU(100)
    for i in range(10_000):
        lru.seen(i)
    st = lru.stats()
    assert st["size"] == 100 and st["evictions"] == 9_900 and st["misses"] == 10_000
    assert lru.seen(9_999) is True and lru.seen(0) is False


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", None, True])
def test_bad_max_size(bad):
    with pytest.raises(ValueError, match="max_size"):
        BoundedLRU(bad)

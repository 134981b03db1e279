import pytest

from system.ttlstate import TTLState


def test_absent_is_empty(clock):
    st = TTLState(10, 5, clock=clock)
    assert st.get(1) == {}
    assert len(st) == 0          # reading an absent key does not create it


def test_get_returns_a_fresh_copy(clock):
    st = TTLState(10, 5, clock=clock)
    original = {"step": 1, "items": [1]}
    st.set(1, original)
    original["items"].append(99)            # mutating the caller's dict after set
    got = st.get(1)
    assert got == {"step": 1, "items": [1]}
    got["step"] = 2
    got["items"].append(2)                  # mutating the returned copy
    assert st.get(1) == {"step": 1, "items": [1]}


def test_expires_after_ttl_since_last_touch(clock):
    st = TTLState(10, 5, clock=clock)
    st.set(1, {"a": 1})
    clock.advance(9.9)
    assert st.get(1) == {"a": 1}            # a read is a touch: expiry moves to +10 from here
    clock.advance(9.9)
    assert st.get(1) == {"a": 1}
    clock.advance(10.0)
    assert st.get(1) == {}
    assert st.stats()["expired"] == 1 and len(st) == 0


def test_update_merges_and_restarts_after_expiry(clock):
    st = TTLState(10, 5, clock=clock)
    assert st.update(7, step=1) == {"step": 1}
    assert st.update(7, name="x") == {"step": 1, "name": "x"}
    clock.advance(10)
    assert st.update(7, name="y") == {"name": "y"}   # the expired state is not resurrected


def test_cleanup_removes_only_expired(clock):
    st = TTLState(10, 100, clock=clock)
    for k in range(5):
        st.set(k, {"k": k})
    clock.advance(6)
    for k in range(5, 8):
        st.set(k, {"k": k})
    st.get(0)                               # touched at +6: stays
    clock.advance(5)                        # now +11: keys 1..4 expired
    assert st.cleanup() == 4
    assert sorted(k for k in range(8) if k in st) == [0, 5, 6, 7]
    assert st.cleanup() == 0
    assert st.stats() == {"size": 4, "max_entries": 100, "ttl_seconds": 10.0,
                          "expired": 4, "evictions": 0}


def test_cleanup_with_explicit_out_of_order_times():
    st = TTLState(10, 100, clock=lambda: 0.0)
    st.set("new", {}, now=100.0)
    st.set("old", {}, now=50.0)             # touched later, but with an older timestamp
    assert st.cleanup(now=105.0) == 1
    assert "old" not in st and "new" in st


def test_max_entries_evicts_least_recently_touched(clock):
    st = TTLState(100, 3, clock=clock)
    for k in "abc":
        st.set(k, {"k": k})
        clock.advance(1)
    st.get("a")                             # a is now the most recently touched
    st.set("d", {})
    assert "b" not in st and {"a", "c", "d"} <= {k for k in "abcd" if k in st}
    assert st.stats()["evictions"] == 1 and len(st) == 3


def test_delete(clock):
    st = TTLState(10, 5, clock=clock)
    st.set(1, {"x": 1})
    assert st.delete(1) is True and st.delete(1) is False and st.get(1) == {}


def test_bad_arguments(clock):
    with pytest.raises(ValueError, match="ttl_seconds"):
        TTLState(0, 5)
    with pytest.raises(ValueError, match="max_entries"):
        TTLState(1, 0)
    st = TTLState(1, 5, clock=clock)
    with pytest.raises(TypeError, match="dict"):
        st.set(1, [("a", 1)])

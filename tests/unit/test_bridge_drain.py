"""Bridge.drain: the wake-up byte is read only when something saw it (system/bridge.py)."""
from __future__ import annotations

import select

from system.bridge import Bridge


def readable(bridge: Bridge) -> bool:
    return bool(select.select([bridge.fd], [], [], 0)[0])


def test_a_drain_without_read_returns_every_item_and_leaves_the_byte_for_the_select():
    bridge = Bridge("address")
    try:
        bridge.post("a")
        bridge.post("b")              # one byte per burst: only the first post wrote one
        assert readable(bridge)
        assert bridge.drain(read=False) == ["a", "b"]
        # The byte is still there: the runner's select() fires and its drain reads it, so a
        # post that raced an inline drain never leaves select() spinning on a stale byte.
        assert readable(bridge)
        assert bridge.drain() == []
        assert not readable(bridge)
        bridge.post("c")              # signalled again after the drain: a new byte
        assert readable(bridge)
        assert bridge.drain() == ["c"]
        assert not readable(bridge)
    finally:
        bridge.close()


def test_the_watch_returned_after_each_delivery_is_made_once_and_none_once_closed():
    bridge = Bridge("address")
    watch = bridge.watch()
    assert watch is bridge.watch()
    assert watch.filenos == [bridge.fd]
    bridge.close()
    assert bridge.watch() is None

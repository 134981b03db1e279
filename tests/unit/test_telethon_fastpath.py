"""FastUpdates (actors/backends/telethon_fastpath.py) on a real, unconnected TelegramClient:
which updates may skip ahead of Telethon's update loop, and that everything still reaches
that loop, in arrival order, after the hops that let the answer go out first."""
from __future__ import annotations

import asyncio
import datetime
import time

import pytest
from telethon import TelegramClient, types
from telethon._updates import SessionState
from telethon.sessions import MemorySession
from telethon.tl.core import TLMessage

from actors.backends.telethon_fastpath import RELEASE_HOPS, FastUpdates, fast_delivered

USER = types.User(id=7, access_hash=99, first_name="U", username="u7")
NOW = datetime.datetime.now(tz=datetime.timezone.utc)


def client_at(pts: int = 10, seq: int = 0) -> TelegramClient:
    client = TelegramClient(MemorySession(), 1, "0" * 32)
    client._message_box.load(SessionState(0, 0, True, pts, 0, int(time.time()), seq, None), [])
    client._sender._updates_queue = client._updates_queue = asyncio.Queue()
    return client


def new_message(pts: int, msg_id: int = 5, out: bool = False, peer=None, seq: int = 0,
                text: str = "hi") -> types.Updates:
    m = types.Message(id=msg_id, peer_id=peer or types.PeerUser(7), date=NOW, message=text,
                      out=out)
    return types.Updates(updates=[types.UpdateNewMessage(m, pts, 1)], users=[USER], chats=[],
                         date=NOW, seq=seq)


def test_only_a_message_that_follows_the_known_state_with_nothing_before_it_is_eligible():
    async def main():
        client = client_at(pts=10, seq=3)
        fast = FastUpdates(client, lambda obj, upd: None)
        assert fast.eligible(new_message(11)) is not None
        assert fast.eligible(new_message(11, peer=types.PeerChat(40))) is not None
        assert fast.eligible(new_message(11, seq=4)) is not None
        assert fast.eligible(new_message(12)) is None, "a pts gap must take Telethon's path"
        assert fast.eligible(new_message(10)) is None, "an old update is Telethon's to skip"
        assert fast.eligible(new_message(11, seq=6)) is None, "a seq gap"
        assert fast.eligible(new_message(11, out=True)) is None
        channel = types.Message(id=1, peer_id=types.PeerChannel(9), date=NOW, message="c")
        assert fast.eligible(types.Updates([types.UpdateNewChannelMessage(channel, 5, 1)],
                                           [], [], NOW, 0)) is None
        assert fast.eligible(types.UpdateShortMessage(1, 7, "x", 11, 1, NOW)) is None
        two = new_message(11)
        two.updates.append(types.UpdateNewMessage(two.updates[0].message, 12, 1))
        assert fast.eligible(two) is None

        client._updates_queue.put_nowait(new_message(11))
        assert fast.eligible(new_message(12)) is None, "an update is queued before it"
        client._updates_queue.get_nowait()
        client._event_handler_tasks.add(asyncio.current_task())
        assert fast.eligible(new_message(11)) is None, "a handler still has an update"
        client._event_handler_tasks.clear()
        client._message_box.getting_diff_for.add(object())
        assert fast.eligible(new_message(11)) is None, "a difference is being fetched"
    asyncio.run(main())


def test_delivered_at_once_held_then_queued_for_telethon_in_arrival_order():
    async def main():
        client = client_at(pts=10)
        delivered = []
        fast = FastUpdates(client, lambda obj, upd: delivered.append(upd)).install()
        handle = client._sender._handle_update
        first, second = new_message(11, 5, text="one"), new_message(12, 6, text="two")
        await handle(TLMessage(1, 1, first))
        await handle(TLMessage(2, 2, second))    # arrives while the first is held
        assert delivered == [first.updates[0]], "only the first was eligible"
        assert fast_delivered(first.updates[0]) and not fast_delivered(second.updates[0])
        assert client._updates_queue.qsize() == 0, "held: Telethon must not run before the send"
        assert client._mb_entity_cache.get(7) is not None, "the answer's peer must resolve"
        for _ in range(RELEASE_HOPS - 1):
            await asyncio.sleep(0)
        assert client._updates_queue.qsize() == 0
        await asyncio.sleep(0)
        queued = [client._updates_queue.get_nowait() for _ in range(2)]
        assert queued == [first, second]
        assert fast.delivered == 1 and fast.held == []
        # with nothing held and nothing queued, the next one is eligible again
        await handle(TLMessage(3, 3, new_message(11, 7)))
        assert len(delivered) == 2
    asyncio.run(main())


def test_a_delivery_that_raises_leaves_the_update_to_telethon():
    async def main():
        client = client_at(pts=10)

        def broken(obj, upd):
            raise RuntimeError("conversion bug")
        fast = FastUpdates(client, broken).install()
        update = new_message(11)
        await client._sender._handle_update(TLMessage(1, 1, update))
        for _ in range(RELEASE_HOPS):
            await asyncio.sleep(0)
        assert client._updates_queue.get_nowait() is update
        assert not fast_delivered(update.updates[0]) and fast.failed == 1
    asyncio.run(main())


def test_not_eligible_goes_straight_to_telethons_queue():
    async def main():
        client = client_at(pts=10)
        fast = FastUpdates(client, lambda obj, upd: pytest.fail("not eligible")).install()
        gap = new_message(15)
        await client._sender._handle_update(TLMessage(1, 1, gap))
        assert client._updates_queue.get_nowait() is gap and fast.held == []
    asyncio.run(main())

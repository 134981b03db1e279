"""FastUpdates: a new message goes to the actors straight from Telethon's receive loop, and
Telethon's own update bookkeeping runs after the answer is on its way.

Why: Telethon hands a decoded update to its handlers through its whole update machinery: the
update queue, the update loop (MessageBox: pts and gap bookkeeping; the entity cache and the
session's entities), a task per update, then an event object (NewMessage, its message
initialised again). Traced at light load (bench/RESULTS.md, seventeenth session) that was
0.27 ms of the 0.55 ms between the packet's arrival and the handler, on every message, and it
ran before the answer could be sent. For the common case (one new message that follows the
account's known pts, nothing else queued or being handled) none of it decides anything about
the message: the bookkeeping only has to happen, in arrival order, before the next update's.

How: the sender's `_handle_update`, which puts each decoded Updates on the update queue, is
replaced (`install`). An eligible Updates (`eligible`) is handed to DELIVER (the backend converts
it and pushes it to the actors, where in-process it runs inline and starts the answer's job),
then *held*: it goes on Telethon's update queue `RELEASE_HOPS` loop iterations later, once the
answer's request has been written (the job's task, Telethon's send loop, the write), so
Telethon's bookkeeping (~0.3 ms at light load) does not run in front of the answer. Telethon
then processes it as always (pts, entities, session state) and dispatches it; the backend's
handler skips an update marked `FAST_MARK`. Every Updates that arrives while one is held is
held behind it, so Telethon sees all of them in arrival order.

Why it is safe:
- Order and gaps: eligible only when Telethon has nothing queued, no handler task, no
  conversation, no difference being fetched and no possible gap, and when the update's pts
  follows the account's pts exactly (its seq, if it has one, the account's seq). Anything else
  takes Telethon's path, which detects and fills gaps as before.
- Exactly once to the actors: a delivered update is marked before Telethon sees it, and the
  handler skips marked updates (the bots' dedup would drop a repeat anyway).
- Session state: a state saved while an update is held or not yet applied is older than the
  update, so a resume fetches it again (at least once, deduplicated by the bot), never past it.
- The answer can go out before the update loop ran: the Updates' users and chats go into
  Telethon's entity cache first, as the update loop does.
- A delivery that raises is logged and leaves the update unmarked: Telethon's path delivers it.
"""
from __future__ import annotations

import asyncio
import logging

from telethon import types
from telethon._updates.messagebox import ENTRY_ACCOUNT

log = logging.getLogger("tgfleet.backend.telethon")

# The answer's job task, then Telethon's send loop (which writes at once, see
# telethon_backend.FleetConnection), then one spare: counted in loop iterations.
RELEASE_HOPS = 3
FAST_MARK = "_fleet_fast"
_PEERS = (types.PeerUser, types.PeerChat)


class FastUpdates:
    """Installed on one TelegramClient, used on its loop thread only."""

    def __init__(self, client, deliver):
        """DELIVER(updates, update) hands an eligible Updates' UpdateNewMessage to the
        actors; if it raises, the update is left to Telethon's path."""
        self.client = client
        self.deliver = deliver
        self.held: list = []
        self.delivered = 0       # messages that took this path
        self.failed = 0          # deliveries that raised (Telethon's path took them)
        self._queue_update = None

    def install(self) -> "FastUpdates":
        sender = self.client._sender
        self._queue_update = sender._handle_update
        sender._handle_update = self.handle_update
        return self

    async def handle_update(self, message):
        obj = message.obj
        held = self.held
        if held:                      # behind a held update: keep the arrival order
            held.append(obj)
            return
        upd = self.eligible(obj)
        if upd is None:
            await self._queue_update(message)
            return
        held.append(obj)
        self._release_after(RELEASE_HOPS)
        self.client._mb_entity_cache.extend(obj.users, obj.chats)
        try:
            self.deliver(obj, upd)
        except Exception:
            self.failed += 1
            log.exception("fast update path: delivery failed; Telethon's path delivers it")
            return
        setattr(upd, FAST_MARK, True)
        self.delivered += 1

    def eligible(self, obj):
        """The UpdateNewMessage of an Updates that may skip ahead of Telethon's update loop,
        or None."""
        if type(obj) is not types.Updates or len(obj.updates) != 1:
            return None
        upd = obj.updates[0]
        if type(upd) is not types.UpdateNewMessage:
            return None
        m = upd.message
        if type(m) is not types.Message or m.out or type(m.peer_id) not in _PEERS:
            return None
        client = self.client
        if client._updates_queue.qsize() or client._event_handler_tasks or \
                client._conversations:
            return None
        box = client._message_box
        if box.getting_diff_for or box.possible_gaps or (obj.seq and obj.seq != box.seq + 1):
            return None
        state = box.map.get(ENTRY_ACCOUNT)
        if state is None or state.pts + upd.pts_count != upd.pts:
            return None
        return upd

    def _release_after(self, hops: int) -> None:
        if hops <= 0:
            self._release()
        else:
            asyncio.get_running_loop().call_soon(self._release_after, hops - 1)

    def _release(self) -> None:
        held, self.held = self.held, []
        put = self.client._updates_queue.put_nowait
        for obj in held:
            put(obj)


def fast_delivered(update) -> bool:
    """Whether FastUpdates already gave this update to the actors."""
    return getattr(update, FAST_MARK, False)

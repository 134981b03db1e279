"""Delivery of pushed updates to connected clients.

Why: a message sent by one account must reach the other participants' live sessions as
pushed `Updates` with the right pts, rendered for each recipient. The hub knows, per
account, which connection receives updates: for each auth key the most recent connection
that made a real request (not only help.getConfig / upload.*). That matches what clients
expect: Pyrogram's extra media sessions (same auth key) must not get duplicates, and a
reconnecting client takes over from its dead connection.

The origin connection of a request is skipped for its own account, because the RPC result
already carries the sender's update (as Telegram does).
"""
from __future__ import annotations

import time

from telethon.tl import types as T

from .render import Renderer
from .world import Message, World


class Hub:
    def __init__(self, world: World, renderer: Renderer):
        self.world = world
        self.render = renderer
        self.by_user: dict[int, dict[int, object]] = {}  # user_id -> {auth key id: connection}

    def register(self, conn) -> None:
        uid = conn.user_id
        if uid is None or conn.closed:
            return
        self.by_user.setdefault(uid, {})[conn.key_id] = conn
        conn.update_target = True

    def unregister(self, conn) -> None:
        if not conn.update_target:
            return
        conn.update_target = False
        for uid, conns in list(self.by_user.items()):
            if conns.get(conn.key_id) is conn:
                del conns[conn.key_id]
                if not conns:
                    del self.by_user[uid]

    def connected(self, user_id: int) -> bool:
        return bool(self.by_user.get(user_id))

    def _targets(self, uid: int, origin):
        conns = self.by_user.get(uid)
        if not conns:
            return ()
        return [c for c in conns.values() if c is not origin]

    def _updates(self, upd, msgs, viewer, extra_chats=()):
        users, chats = self.render.entities_for(msgs, viewer, chat_ids=extra_chats)
        return T.Updates(updates=[upd], users=users, chats=chats, date=int(time.time()), seq=0)

    def on_new_message(self, m: Message, pts_by_user: dict, chan_pts, origin) -> None:
        r = self.render
        if chan_pts is not None:
            for uid in self.world.chats[m.peer_id].members:
                for conn in self._targets(uid, origin):
                    conn.push(self._updates(T.UpdateNewChannelMessage(r.message(m, uid), chan_pts, 1), (m,), uid))
            return
        for uid, pts in pts_by_user.items():
            for conn in self._targets(uid, origin):
                conn.push(self._updates(T.UpdateNewMessage(r.message(m, uid), pts, 1), (m,), uid))

    def on_edit_message(self, m: Message, pts_by_user: dict, chan_pts, origin) -> None:
        r = self.render
        if chan_pts is not None:
            for uid in self.world.chats[m.peer_id].members:
                for conn in self._targets(uid, origin):
                    conn.push(self._updates(T.UpdateEditChannelMessage(r.message(m, uid), chan_pts, 1), (m,), uid))
            return
        for uid, pts in pts_by_user.items():
            for conn in self._targets(uid, origin):
                conn.push(self._updates(T.UpdateEditMessage(r.message(m, uid), pts, 1), (m,), uid))

    def on_delete_messages(self, m: Message, ids, pts_by_user: dict, chan_pts, origin) -> None:
        if chan_pts is not None:
            for uid in self.world.chats[m.peer_id].members:
                for conn in self._targets(uid, origin):
                    conn.push(self._updates(T.UpdateDeleteChannelMessages(m.peer_id, ids, chan_pts, 1), (), uid,
                                            extra_chats=(m.peer_id,)))
            return
        for uid, pts in pts_by_user.items():
            for conn in self._targets(uid, origin):
                conn.push(self._updates(T.UpdateDeleteMessages(ids, pts, 1), (), uid))

"""updates.getState / getDifference / getChannelDifference.

Why: clients track pts and fill gaps themselves. Telethon calls getDifference at start and
whenever a pushed update skips a pts; Pyrogram calls it for short updates and in
recover_gaps(). A client that was disconnected gets every event it missed from the
account's pts log (difference slices of 1000). Channels have their own logs; getDifference
lists channels with news since the client's `date` as updateChannelTooLong so clients go
and ask getChannelDifference.
"""
from __future__ import annotations

import time

from telethon.tl import functions as F
from telethon.tl import types as T

from ..world import WorldError
from .base import rpc

DIFF_LIMIT = 1000
CHANNEL_DIFF_LIMIT = 1000


def _state(pts: int):
    return T.updates.State(pts=pts, qts=0, date=int(time.time()), seq=0, unread_count=0)


@rpc(F.updates.GetStateRequest)
def get_state(ctx, req):
    return _state(ctx.me.pts)


def _events_to_tl(ctx, events, viewer, channel_id=None):
    """(new_messages, other_updates, messages rendered) for a list of log events."""
    new, other, msgs = [], [], []
    w, r = ctx.world, ctx.render
    for pts, kind, ids, _date in events:
        if kind == "new":
            m = w.messages.get(ids[0])
            if m is not None and not m.deleted:
                new.append(r.message(m, viewer))
                msgs.append(m)
        elif kind == "edit":
            m = w.messages.get(ids[0])
            if m is not None and not m.deleted:
                tl = r.message(m, viewer)
                other.append(T.UpdateEditChannelMessage(tl, pts, 1) if channel_id else T.UpdateEditMessage(tl, pts, 1))
                msgs.append(m)
        elif kind == "delete":
            other.append(T.UpdateDeleteChannelMessages(channel_id, ids, pts, 1) if channel_id
                         else T.UpdateDeleteMessages(ids, pts, 1))
    return new, other, msgs


@rpc(F.updates.GetDifferenceRequest)
def get_difference(ctx, req):
    uid = ctx.user_id
    cur = ctx.me.pts
    pts = req.pts or 0
    if pts > cur:
        return T.updates.DifferenceTooLong(pts=cur)
    limit = min(DIFF_LIMIT, req.pts_total_limit or DIFF_LIMIT)
    events, final_pts, sliced = ctx.world.difference(uid, pts, limit)
    date = req.date
    date = int(date.timestamp()) if hasattr(date, "timestamp") else int(date or 0)
    channels = ctx.world.channels_updated_since(uid, date) if date else []
    if not events and not channels:
        return T.updates.DifferenceEmpty(date=int(time.time()), seq=0)
    new, other, msgs = _events_to_tl(ctx, events, uid)
    for c in channels:
        other.append(T.UpdateChannelTooLong(channel_id=c.chat_id, pts=c.pts))
    users, chats = ctx.render.entities_for(msgs, uid, chat_ids=[c.chat_id for c in channels])
    if sliced:
        return T.updates.DifferenceSlice(new_messages=new, new_encrypted_messages=[], other_updates=other,
                                         chats=chats, users=users, intermediate_state=_state(final_pts))
    return T.updates.Difference(new_messages=new, new_encrypted_messages=[], other_updates=other,
                                chats=chats, users=users, state=_state(final_pts))


@rpc(F.updates.GetChannelDifferenceRequest)
def get_channel_difference(ctx, req):
    cid = ctx.channel(req.channel)
    c = ctx.world.chats[cid]
    if ctx.user_id not in c.members:
        raise WorldError(406, "CHANNEL_PRIVATE")
    pts = req.pts or 0
    if pts >= c.pts or pts < 0:
        return T.updates.ChannelDifferenceEmpty(pts=c.pts, final=True, timeout=30)
    limit = max(1, min(CHANNEL_DIFF_LIMIT, req.limit or CHANNEL_DIFF_LIMIT))
    events, final_pts, sliced = ctx.world.channel_difference(cid, pts, limit)
    new, other, msgs = _events_to_tl(ctx, events, ctx.user_id, channel_id=cid)
    users, chats = ctx.render.entities_for(msgs, ctx.user_id, chat_ids=[cid])
    return T.updates.ChannelDifference(pts=final_pts, new_messages=new, other_updates=other, chats=chats,
                                       users=users, final=not sliced, timeout=30)

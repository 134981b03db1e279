"""messages.*: send, forward, edit, delete, history, dialogs, getMessages, readHistory.

Why: these are the calls bots and user accounts make all day. Each send is checked against
the flood limits (bots only), creates messages in the world (which pushes them to the other
participants) and answers the sender the way Telegram does: updateShortSentMessage for a
plain private text, otherwise Updates with updateMessageID (random_id -> id) plus the new
message update, so both libraries build their return value from it. Bots may not read
history or dialogs on Telegram (BOT_METHOD_INVALID), and neither may they here.
"""
from __future__ import annotations

import os
import time

from telethon.tl import functions as F
from telethon.tl import types as T

from ..tlcodec import tl_bool
from ..world import WorldError
from .base import rpc


def reply_id(reply_to):
    if isinstance(reply_to, T.InputReplyToMessage):
        return reply_to.reply_to_msg_id
    return None


def entities_in(ctx, entities):
    """Request entities -> stored form (hex TL); input mention entities become output ones."""
    if not entities:
        return None
    out = []
    for e in entities:
        if isinstance(e, T.InputMessageEntityMentionName):
            try:
                uid = ctx.user(e.user_id)
            except WorldError:
                continue
            e = T.MessageEntityMentionName(offset=e.offset, length=e.length, user_id=uid)
        out.append(bytes(e).hex())
    return out


def sent_result(ctx, items):
    """items: [(message, pts, random_id)] created by the caller in one request."""
    uid = ctx.user_id
    if len(items) == 1:
        m, pts, _rid = items[0]
        if m.peer_kind == "user" and not m.media and not m.fwd:
            return T.UpdateShortSentMessage(id=m.id, pts=pts, pts_count=1, date=m.date, out=True,
                                            entities=ctx.render.message(m, uid).entities)
    updates = [T.UpdateMessageID(id=m.id, random_id=rid) for m, _pts, rid in items if rid is not None]
    for m, pts, _rid in items:
        tl = ctx.render.message(m, uid)
        updates.append(T.UpdateNewChannelMessage(tl, pts, 1) if m.peer_kind == "channel"
                       else T.UpdateNewMessage(tl, pts, 1))
    users, chats = ctx.render.entities_for([m for m, _p, _r in items], uid)
    return T.Updates(updates=updates, users=users, chats=chats, date=int(time.time()), seq=0)


def require_user_account(ctx):
    if ctx.me.is_bot:
        raise WorldError(400, "BOT_METHOD_INVALID")


@rpc(F.messages.SendMessageRequest)
def send_message(ctx, req):
    kind, ident = ctx.peer(req.peer)
    ctx.check_flood(kind, ident)
    m, pts = ctx.world.post_message(ctx.user_id, kind, ident, req.message, reply_to=reply_id(req.reply_to),
                                    origin=ctx.conn, entities=entities_in(ctx, req.entities))
    return sent_result(ctx, [(m, pts, req.random_id)])


@rpc(F.messages.ForwardMessagesRequest)
def forward_messages(ctx, req):
    fk, fi = ctx.peer(req.from_peer)
    tk, ti = ctx.peer(req.to_peer)
    w = ctx.world
    sources = []
    for mid in req.id:
        src = w.get_message(ctx.user_id, mid)
        if src is not None and w.peer_for(src, ctx.user_id) == (fk, fi):
            sources.append(src)
    if not sources:
        raise WorldError(400, "MESSAGE_ID_INVALID")
    ctx.check_flood(tk, ti, n=len(sources))
    random_ids = list(req.random_id or [])
    groups: dict = {}
    items = []
    for n, src in enumerate(sources):
        if req.drop_author:
            fwd = None
        elif src.fwd:
            fwd = src.fwd
        elif src.post:
            fwd = {"from_kind": "channel", "from_id": src.peer_id, "date": src.date, "channel_post": src.id}
        else:
            fwd = {"from_kind": "user", "from_id": src.from_id, "date": src.date}
        gid = None
        if src.grouped_id:
            gid = groups.setdefault(src.grouped_id, int.from_bytes(os.urandom(7), "little"))
        text = "" if (req.drop_media_captions and src.media) else src.text
        m, pts = w.post_message(ctx.user_id, tk, ti, text, media=src.media, grouped_id=gid, fwd=fwd,
                                origin=ctx.conn, entities=src.entities if text else None)
        items.append((m, pts, random_ids[n] if n < len(random_ids) else None))
    return sent_result(ctx, items)


@rpc(F.messages.EditMessageRequest)
def edit_message(ctx, req):
    kind, ident = ctx.peer(req.peer)
    media = None
    if req.media is not None:
        from .media import resolve_input_media  # local import: media imports this module
        media = resolve_input_media(ctx, req.media)
    m, pts = ctx.world.edit_message(ctx.user_id, kind, ident, req.id, text=req.message, media=media,
                                    origin=ctx.conn, entities=entities_in(ctx, req.entities))
    tl = ctx.render.message(m, ctx.user_id)
    upd = T.UpdateEditChannelMessage(tl, pts, 1) if m.peer_kind == "channel" else T.UpdateEditMessage(tl, pts, 1)
    users, chats = ctx.render.entities_for([m], ctx.user_id)
    return T.Updates(updates=[upd], users=users, chats=chats, date=int(time.time()), seq=0)


@rpc(F.messages.DeleteMessagesRequest)
def delete_messages(ctx, req):
    pts, count = ctx.world.delete_messages(ctx.user_id, req.id, origin=ctx.conn)
    return T.messages.AffectedMessages(pts=pts, pts_count=count)


@rpc(F.channels.DeleteMessagesRequest)
def channel_delete_messages(ctx, req):
    cid = ctx.channel(req.channel)
    ctx.world.member_chat(ctx.user_id, "channel", cid)
    pts, count = ctx.world.delete_messages(ctx.user_id, req.id, channel_id=cid, origin=ctx.conn)
    return T.messages.AffectedMessages(pts=pts, pts_count=count)


def messages_result(ctx, msgs, kind=None, ident=None, total=None):
    users, chats = ctx.render.entities_for(msgs, ctx.user_id, chat_ids=[ident] if kind in ("chat", "channel") else ())
    tl = [ctx.render.message(m, ctx.user_id) for m in msgs]
    if kind == "channel":
        return T.messages.ChannelMessages(pts=ctx.world.chats[ident].pts, count=total if total is not None else len(tl),
                                          messages=tl, topics=[], chats=chats, users=users)
    if total is not None and total > len(tl):
        return T.messages.MessagesSlice(count=total, messages=tl, topics=[], chats=chats, users=users)
    return T.messages.Messages(messages=tl, topics=[], chats=chats, users=users)


@rpc(F.messages.GetHistoryRequest)
def get_history(ctx, req):
    require_user_account(ctx)
    kind, ident = ctx.peer(req.peer)
    if kind != "user":
        ctx.world.member_chat(ctx.user_id, kind, ident)
    msgs, total = ctx.world.get_history(ctx.user_id, kind, ident, offset_id=req.offset_id,
                                        add_offset=req.add_offset, limit=req.limit, max_id=req.max_id,
                                        min_id=req.min_id)
    return messages_result(ctx, msgs, kind, ident, total)


def _lookup(ctx, ids):
    out = []
    for i in ids:
        mid = getattr(i, "id", None)
        if isinstance(i, int):
            mid = i
        elif isinstance(i, T.InputMessageReplyTo):
            src = ctx.world.get_message(ctx.user_id, i.id)
            mid = src.reply_to if src else None
        m = ctx.world.get_message(ctx.user_id, mid) if mid else None
        out.append(m)
    return out


@rpc(F.messages.GetMessagesRequest)
def get_messages(ctx, req):
    found = _lookup(ctx, req.id)
    msgs = [m for m in found if m is not None and m.peer_kind != "channel"]
    return messages_result(ctx, msgs)


@rpc(F.channels.GetMessagesRequest)
def channel_get_messages(ctx, req):
    cid = ctx.channel(req.channel)
    ctx.world.member_chat(ctx.user_id, "channel", cid)
    found = _lookup(ctx, req.id)
    msgs = [m for m in found if m is not None and m.peer_kind == "channel" and m.peer_id == cid]
    return messages_result(ctx, msgs, "channel", cid)


@rpc(F.messages.GetDialogsRequest)
def get_dialogs(ctx, req):
    require_user_account(ctx)
    w, uid = ctx.world, ctx.user_id
    dialogs = sorted(w.dialogs.get(uid, {}).items(), key=lambda kv: kv[1], reverse=True)
    if req.offset_id:
        dialogs = [d for d in dialogs if d[1] < req.offset_id]
    total = len(dialogs)
    limit = max(1, min(req.limit or 100, 100))
    dialogs = dialogs[:limit]
    out, msgs, chat_ids = [], [], []
    for (kind, ident), top in dialogs:
        pts = None
        if kind != "user":
            chat_ids.append(ident)
            if kind == "channel":
                pts = w.chats[ident].pts
        if top:
            msgs.append(w.messages[top])
        out.append(T.Dialog(peer=ctx.render.peer(kind, ident), top_message=top, read_inbox_max_id=top,
                            read_outbox_max_id=top, unread_count=0, unread_mentions_count=0,
                            unread_reactions_count=0, unread_poll_votes_count=0,
                            notify_settings=T.PeerNotifySettings(), pts=pts))
    user_ids = [ident for (kind, ident), _t in dialogs if kind == "user"]
    users, chats = ctx.render.entities_for(msgs, uid, user_ids=user_ids, chat_ids=chat_ids)
    tl_msgs = [ctx.render.message(m, uid) for m in msgs]
    if total > len(out):
        return T.messages.DialogsSlice(count=total, dialogs=out, messages=tl_msgs, chats=chats, users=users)
    return T.messages.Dialogs(dialogs=out, messages=tl_msgs, chats=chats, users=users)


@rpc(F.messages.ReadHistoryRequest)
def read_history(ctx, req):
    ctx.peer(req.peer)
    return T.messages.AffectedMessages(pts=ctx.me.pts, pts_count=0)


@rpc(F.channels.ReadHistoryRequest)
def channel_read_history(ctx, req):
    ctx.channel(req.channel)
    return tl_bool(True)

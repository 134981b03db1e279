"""Chats and channels as clients look them up: getChats, getChannels, getFullChat/Channel.

Why: Telethon's get_entity and Pyrogram's get_chat ask for these before acting on a group
or channel they have not cached. Membership and creation are managed through the control
surface (control_server.py), not through MTProto.
"""
from __future__ import annotations

from telethon.tl import functions as F
from telethon.tl import types as T

from ..world import WorldError
from .base import rpc


@rpc(F.messages.GetChatsRequest)
def get_chats(ctx, req):
    out = []
    for cid in req.id:
        c = ctx.world.chats.get(cid)
        if c is not None and not c.is_channel:
            out.append(ctx.render.chat(c, ctx.user_id))
    return T.messages.Chats(chats=out)


@rpc(F.channels.GetChannelsRequest)
def get_channels(ctx, req):
    out = []
    for ic in req.id:
        try:
            cid = ctx.channel(ic)
        except WorldError:
            continue
        out.append(ctx.render.chat(ctx.world.chats[cid], ctx.user_id))
    return T.messages.Chats(chats=out)


@rpc(F.messages.GetFullChatRequest)
def get_full_chat(ctx, req):
    c = ctx.world.chat(req.chat_id, "chat")
    parts = []
    for uid, role in c.members.items():
        if role == "creator":
            parts.append(T.ChatParticipantCreator(user_id=uid))
        elif role == "admin":
            parts.append(T.ChatParticipantAdmin(user_id=uid, inviter_id=uid, date=c.date))
        else:
            parts.append(T.ChatParticipant(user_id=uid, inviter_id=uid, date=c.date))
    full = T.ChatFull(id=c.chat_id, about="", participants=T.ChatParticipants(c.chat_id, parts, 1),
                      notify_settings=T.PeerNotifySettings())
    users = [ctx.render.user(uid, ctx.user_id) for uid in c.members]
    return T.messages.ChatFull(full_chat=full, chats=[ctx.render.chat(c, ctx.user_id)], users=users)


@rpc(F.channels.GetFullChannelRequest)
def get_full_channel(ctx, req):
    cid = ctx.channel(req.channel)
    c = ctx.world.chats[cid]
    full = T.ChannelFull(id=cid, about="", read_inbox_max_id=0, read_outbox_max_id=0, unread_count=0,
                         chat_photo=T.PhotoEmpty(id=0), notify_settings=T.PeerNotifySettings(), bot_info=[],
                         pts=c.pts, participants_count=len(c.members),
                         admins_count=sum(1 for r in c.members.values() if r != "member"))
    return T.messages.ChatFull(full_chat=full, chats=[ctx.render.chat(c, ctx.user_id)], users=[])


@rpc(F.channels.GetParticipantRequest)
def get_participant(ctx, req):
    cid = ctx.channel(req.channel)
    c = ctx.world.chats[cid]
    uid = ctx.user(req.participant)
    if uid not in c.members:
        raise WorldError(400, "USER_NOT_PARTICIPANT")
    p = _participant(c, uid, ctx.user_id)
    return T.channels.ChannelParticipant(participant=p, chats=[ctx.render.chat(c, ctx.user_id)],
                                         users=[ctx.render.user(uid, ctx.user_id)])


def _participant(c, uid: int, viewer: int):
    role = c.members[uid]
    if role == "creator":
        return T.ChannelParticipantCreator(user_id=uid, admin_rights=T.ChatAdminRights(other=True))
    if role == "admin":
        return T.ChannelParticipantAdmin(user_id=uid, promoted_by=uid, date=c.date,
                                         admin_rights=T.ChatAdminRights(post_messages=True, other=True),
                                         can_edit=False, is_self=uid == viewer)
    return T.ChannelParticipant(user_id=uid, date=c.date)


@rpc(F.channels.GetParticipantsRequest)
def get_participants(ctx, req):
    cid = ctx.channel(req.channel)
    c = ctx.world.member_chat(ctx.user_id, "channel", cid)
    uids = list(c.members)
    flt = req.filter
    if isinstance(flt, T.ChannelParticipantsAdmins):
        uids = [u for u in uids if c.members[u] in ("creator", "admin")]
    elif isinstance(flt, T.ChannelParticipantsBots):
        uids = [u for u in uids if ctx.world.accounts[u].is_bot]
    elif isinstance(flt, T.ChannelParticipantsSearch) and flt.q:
        q = flt.q.lower()
        uids = [u for u in uids if q in (ctx.world.accounts[u].first_name or "").lower()
                or q in (ctx.world.accounts[u].username or "").lower()]
    page = uids[max(0, req.offset): max(0, req.offset) + max(0, min(req.limit or 200, 200))]
    return T.channels.ChannelParticipants(count=len(uids), participants=[_participant(c, u, ctx.user_id) for u in page],
                                          chats=[], users=[ctx.render.user(u, ctx.user_id) for u in page])

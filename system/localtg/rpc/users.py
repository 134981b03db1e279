"""Accounts as clients see them: users.*, contacts.resolveUsername, small account/bots calls.

Why: both libraries ask for the logged-in user at start (users.getUsers([self]) in Telethon,
users.getFullUser(self) in Pyrogram) and resolve peers by id or username before sending.
Harmless housekeeping calls bots make at start (setBotCommands, updateStatus) succeed.
"""
from __future__ import annotations

from telethon.tl import functions as F
from telethon.tl import types as T

from ..tlcodec import tl_bool, tl_vector
from ..world import WorldError
from .base import rpc


@rpc(F.users.GetUsersRequest)
def get_users(ctx, req):
    out = []
    for u in req.id:
        try:
            uid = ctx.user(u)
        except WorldError:
            continue
        out.append(ctx.render.user(uid, ctx.user_id))
    return tl_vector(out)


@rpc(F.users.GetFullUserRequest)
def get_full_user(ctx, req):
    uid = ctx.user(req.id)
    a = ctx.world.accounts[uid]
    full = T.UserFull(
        id=uid, settings=T.PeerSettings(), notify_settings=T.PeerNotifySettings(), common_chats_count=0,
        about=None,
        bot_info=T.BotInfo(user_id=uid, description="", commands=[]) if a.is_bot else None)
    return T.users.UserFull(full_user=full, chats=[], users=[ctx.render.user(uid, ctx.user_id)])


@rpc(F.contacts.ResolveUsernameRequest)
def resolve_username(ctx, req):
    kind, ident = ctx.world.resolve_username(req.username)
    peer = ctx.render.peer(kind, ident)
    if kind == "user":
        return T.contacts.ResolvedPeer(peer=peer, chats=[], users=[ctx.render.user(ident, ctx.user_id)])
    return T.contacts.ResolvedPeer(peer=peer, chats=[ctx.render.chat(ctx.world.chats[ident], ctx.user_id)], users=[])


@rpc(F.contacts.GetContactsRequest)
def get_contacts(ctx, req):
    return T.contacts.Contacts(contacts=[], saved_count=0, users=[])


@rpc(F.account.UpdateStatusRequest, F.bots.SetBotCommandsRequest, F.bots.ResetBotCommandsRequest,
     F.messages.SetTypingRequest, F.account.UpdateNotifySettingsRequest)
def ok_true(ctx, req):
    return tl_bool(True)


@rpc(F.help.GetAppConfigRequest, auth=False)
def get_app_config(ctx, req):
    return T.help.AppConfig(hash=0, config=T.JsonObject(value=[]))

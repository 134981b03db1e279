"""World objects -> TL objects, as one particular account (the viewer) sees them.

Why: Telegram shows the same message differently to each participant (`out`, the dialog
peer of a private chat, `self` on the viewer's own User). Every response and every pushed
update goes through these functions so the two libraries see consistent, complete objects
(users and chats with access hashes, or `event.respond()` fails on a missing peer).
Serialized User objects are cached because they go into nearly every update.
"""
from __future__ import annotations

from telethon.tl import types as T

from .tlcodec import RawBytes
from .world import Chat, Message, World

_EMPTY_PHOTO = T.ChatPhotoEmpty()
_NOTIFY = T.PeerNotifySettings()


class Renderer:
    def __init__(self, world: World):
        self.world = world
        self._user_cache: dict = {}

    # -- peers ------------------------------------------------------------------------
    @staticmethod
    def peer(kind: str, ident: int):
        if kind == "user":
            return T.PeerUser(ident)
        if kind == "chat":
            return T.PeerChat(ident)
        return T.PeerChannel(ident)

    def user(self, uid: int, viewer: int):
        key = (uid, uid == viewer)
        hit = self._user_cache.get(key)
        if hit is None:
            hit = self._user_cache[key] = RawBytes(bytes(self.user_obj(uid, viewer)))
        return hit

    def user_obj(self, uid: int, viewer: int):
        a = self.world.accounts.get(uid)
        if a is None:
            return T.UserEmpty(uid)
        bot = a.is_bot
        return T.User(
            id=a.user_id, is_self=(uid == viewer), bot=bot, access_hash=a.access_hash,
            first_name=a.first_name, last_name=a.last_name, username=a.username,
            phone=a.phone if (uid == viewer or not bot) else None,
            bot_info_version=1 if bot else None, bot_chat_history=False if bot else None,
            bot_nochats=False if bot else None,
            status=None if bot else T.UserStatusRecently(),
        )

    def chat(self, c: Chat, viewer: int):
        role = c.members.get(viewer)
        if not c.is_channel:
            return T.Chat(id=c.chat_id, title=c.title, photo=_EMPTY_PHOTO,
                          participants_count=len(c.members), date=c.date, version=1,
                          creator=role == "creator", left=role is None)
        rights = None
        if role in ("creator", "admin"):
            rights = T.ChatAdminRights(change_info=True, post_messages=True, edit_messages=True,
                                       delete_messages=True, ban_users=True, invite_users=True,
                                       pin_messages=True, manage_call=True, other=True)
        return T.Channel(id=c.chat_id, title=c.title, photo=_EMPTY_PHOTO, date=c.date,
                         access_hash=c.access_hash, broadcast=c.broadcast, megagroup=not c.broadcast,
                         creator=role == "creator", left=role is None, username=c.username,
                         admin_rights=rights, participants_count=len(c.members))

    # -- messages ---------------------------------------------------------------------
    def media(self, media: dict | None):
        if not media:
            return None
        if media["kind"] == "photo":
            return T.MessageMediaPhoto(photo=T.Photo(
                id=media["id"], access_hash=media["access_hash"], file_reference=b"\x01",
                date=media.get("date", 0),
                sizes=[T.PhotoSize(type="x", w=media.get("w", 800), h=media.get("h", 600), size=media["size"])],
                dc_id=2))
        attrs = [T.DocumentAttributeFilename(file_name=media.get("name") or "file")]
        return T.MessageMediaDocument(document=T.Document(
            id=media["id"], access_hash=media["access_hash"], file_reference=b"\x01",
            date=media.get("date", 0), mime_type=media.get("mime") or "application/octet-stream",
            size=media["size"], dc_id=2, attributes=attrs))

    def message(self, m: Message, viewer: int):
        kind, ident = self.world.peer_for(m, viewer)
        fwd = None
        if m.fwd:
            fk, fid = m.fwd.get("from_kind", "user"), m.fwd.get("from_id")
            fwd = T.MessageFwdHeader(date=m.fwd.get("date", m.date),
                                     from_id=self.peer(fk, fid) if fid else None,
                                     from_name=m.fwd.get("from_name"),
                                     channel_post=m.fwd.get("channel_post"))
        return T.Message(
            id=m.id, peer_id=self.peer(kind, ident), date=m.date, message=m.text or "",
            out=m.from_id == viewer,
            post=m.post or None,
            from_id=None if m.post else T.PeerUser(m.from_id),
            fwd_from=fwd,
            reply_to=T.MessageReplyHeader(reply_to_msg_id=m.reply_to) if m.reply_to else None,
            media=self.media(m.media), edit_date=m.edit_date, grouped_id=m.grouped_id,
            entities=[RawBytes(bytes.fromhex(e)) for e in m.entities] if m.entities else None,
            views=1 if m.post else None, forwards=0 if m.post else None,
        )

    # -- entity collection ------------------------------------------------------------
    def entities_for(self, msgs, viewer: int, user_ids=(), chat_ids=()):
        """(users, chats) lists covering every peer the messages mention."""
        uids = {viewer, *user_ids}
        cids = set(chat_ids)
        for m in msgs:
            if m.from_id is not None:
                uids.add(m.from_id)
            if m.peer_kind == "user":
                uids.add(m.peer_id)
            else:
                cids.add(m.peer_id)
            if m.fwd and m.fwd.get("from_id"):
                if m.fwd.get("from_kind", "user") == "user":
                    uids.add(m.fwd["from_id"])
                else:
                    cids.add(m.fwd["from_id"])
        users = [self.user(u, viewer) for u in uids if u in self.world.accounts]
        chats = [self.chat(self.world.chats[c], viewer) for c in cids if c in self.world.chats]
        return users, chats

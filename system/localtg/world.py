"""The local Telegram's world: accounts, auth keys, chats, members, messages and pts logs.

Why: every RPC handler, the control surface and the crowd act on one consistent model that
behaves like Telegram where clients can tell the difference:

- Every account has its own pts sequence ("common box"); each new/edited/deleted message
  in a private chat or basic group adds one event (pts_count 1) to every participant's log,
  so pushed updates and updates.getDifference agree and clients never see gaps.
- Channels (broadcast) and supergroups have one pts sequence per channel, shared by members.
- Message ids come from ONE global counter for all messages (Telegram numbers private/group
  messages per account and channel messages per channel; clients only need ids to be unique
  and increasing within a dialog, which a global counter guarantees, and it lets the control
  surface, the crowd and `received(since_id)` use one id space).
- Access hashes exist and are reported, but are not checked on input (any hash is accepted).

The world is in memory and single-threaded (the server's event loop); each mutation is also
queued to the write-behind Store, and `World.load` rebuilds everything after a restart.
Delivery to connected clients goes through `self.hub` (see hub.py), called after mutations.
"""
from __future__ import annotations

import bisect
import json
import os
import secrets
import time
from dataclasses import dataclass, field

from telethon.crypto import AuthKey

from .store import Store, u64

CHANNEL_MARK = 1_000_000_000_000


class WorldError(Exception):
    """An RPC-visible failure: (code, message) as Telegram would answer it."""

    def __init__(self, code: int, message: str):
        super().__init__("%d %s" % (code, message))
        self.code = code
        self.message = message


@dataclass
class Account:
    user_id: int
    kind: str  # "bot" | "user"
    username: str | None
    first_name: str
    last_name: str | None = None
    phone: str | None = None
    bot_token: str | None = None
    access_hash: int = 0
    pts: int = 0
    simulated: bool = False
    provisioned_key_id: int | None = None
    created: int = 0

    @property
    def is_bot(self) -> bool:
        return self.kind == "bot"


@dataclass
class Chat:
    chat_id: int
    kind: str  # "group" (basic) | "channel" (broadcast) | "supergroup"
    title: str
    access_hash: int = 0
    pts: int = 0
    date: int = 0
    username: str | None = None
    members: dict = field(default_factory=dict)  # user_id -> "creator" | "admin" | "member"

    @property
    def is_channel(self) -> bool:
        return self.kind in ("channel", "supergroup")

    @property
    def broadcast(self) -> bool:
        return self.kind == "channel"

    @property
    def peer_kind(self) -> str:
        return "channel" if self.is_channel else "chat"


@dataclass(slots=True)
class Message:
    id: int
    from_id: int | None
    peer_kind: str  # "user" (private: peer_id = recipient) | "chat" | "channel"
    peer_id: int
    date: int
    text: str = ""
    reply_to: int | None = None
    media: dict | None = None
    grouped_id: int | None = None
    fwd: dict | None = None
    edit_date: int | None = None
    deleted: bool = False
    post: bool = False
    entities: list | None = None  # serialized TL MessageEntity objects, hex


def marked_id(kind: str, ident: int) -> int:
    """Bot-API style peer id: users positive, basic groups negative, channels -100..."""
    if kind == "user":
        return ident
    if kind == "chat":
        return -ident
    return -(CHANNEL_MARK + ident)


def unmark(peer_id: int) -> tuple[str, int]:
    if peer_id > 0:
        return "user", peer_id
    if peer_id <= -CHANNEL_MARK:
        return "channel", -peer_id - CHANNEL_MARK
    return "chat", -peer_id


def _dialog_key(m: Message):
    if m.peer_kind == "user":
        a, b = sorted((m.from_id, m.peer_id))
        return ("p", a, b)
    return (m.peer_kind, m.peer_id)


class World:
    FIRST_USER_ID = 1_000_000
    FIRST_CHAT_ID = 100_000
    LOGIN_CODE = "22222"  # like Telegram's test DCs: the DC number repeated

    def __init__(self, store: Store, data_dir: str):
        self.store = store
        self.data_dir = data_dir
        self.files_dir = os.path.join(data_dir, "files")
        os.makedirs(self.files_dir, exist_ok=True)
        self.hub = None  # set by the server: delivers pushes to connected clients
        self.accounts: dict[int, Account] = {}
        self.by_username: dict[str, tuple[str, int]] = {}
        self.by_phone: dict[str, int] = {}
        self.by_token: dict[str, int] = {}
        self.auth_keys: dict[int, list] = {}  # key_id -> [key bytes, user_id | None]
        self.chats: dict[int, Chat] = {}
        self.messages: dict[int, Message] = {}
        self.user_events: dict[int, list] = {}  # user_id -> [(pts, kind, ids, date)]
        self.chan_events: dict[int, list] = {}  # chat_id -> [(pts, kind, ids, date)]
        self.history: dict[tuple, list] = {}  # dialog key -> [msg ids ascending]
        self.dialogs: dict[int, dict] = {}  # user_id -> {(kind, id): top msg id}
        self.inbox: dict[int, list] = {}  # user_id -> [msg ids received, ascending]
        self.user_chats: dict[int, set] = {}  # user_id -> {chat ids}
        self.listeners: list = []  # callables(msg) run after each new message
        self.next_user_id = self.FIRST_USER_ID
        self.next_chat_id = self.FIRST_CHAT_ID
        self.next_msg_id = 1
        self.next_file_id = 1
        self.messages_routed = 0

    # ------------------------------------------------------------------ persistence --
    def load(self) -> None:
        st = self.store
        meta = st.load_meta()
        for r in st.load("accounts"):
            a = Account(user_id=r["user_id"], kind=r["kind"], username=r["username"],
                        first_name=r["first_name"], last_name=r["last_name"], phone=r["phone"],
                        bot_token=r["bot_token"], access_hash=r["access_hash"], pts=r["pts"],
                        simulated=bool(r["simulated"]),
                        provisioned_key_id=u64(r["provisioned_key_id"]) if r["provisioned_key_id"] is not None else None,
                        created=r["created"])
            self._index_account(a)
            self.next_user_id = max(self.next_user_id, a.user_id + 1)
        for r in st.load("auth_keys"):
            self.auth_keys[u64(r["key_id"])] = [bytes(r["key"]), r["user_id"]]
        for r in st.load("chats"):
            c = Chat(chat_id=r["chat_id"], kind=r["kind"], title=r["title"], access_hash=r["access_hash"],
                     pts=r["pts"], date=r["date"], username=r["username"])
            self.chats[c.chat_id] = c
            if c.username:
                self.by_username[c.username.lower()] = (c.peer_kind, c.chat_id)
            self.next_chat_id = max(self.next_chat_id, c.chat_id + 1)
        for r in st.load("members"):
            c = self.chats.get(r["chat_id"])
            if c is not None:
                c.members[r["user_id"]] = r["role"]
                self.user_chats.setdefault(r["user_id"], set()).add(c.chat_id)
                self.dialogs.setdefault(r["user_id"], {}).setdefault((c.peer_kind, c.chat_id), 0)
        for r in st.load("messages", "ORDER BY id"):
            m = Message(id=r["id"], from_id=r["from_id"], peer_kind=r["peer_kind"], peer_id=r["peer_id"],
                        date=r["date"], text=r["text"] or "", reply_to=r["reply_to"],
                        media=json.loads(r["media"]) if r["media"] else None, grouped_id=r["grouped_id"],
                        fwd=json.loads(r["fwd"]) if r["fwd"] else None, edit_date=r["edit_date"],
                        deleted=bool(r["deleted"]), post=bool(r["post"]),
                        entities=json.loads(r["entities"]) if r.get("entities") else None)
            self.messages[m.id] = m
            self.next_msg_id = max(self.next_msg_id, m.id + 1)
            self._index_message(m)
        for r in st.load("events", "ORDER BY owner_kind, owner_id, pts"):
            ev = (r["pts"], r["kind"], json.loads(r["msg_ids"]), r["date"])
            target = self.user_events if r["owner_kind"] == "u" else self.chan_events
            target.setdefault(r["owner_id"], []).append(ev)
        self.next_file_id = meta.get("next_file_id", 1)

    def _index_account(self, a: Account) -> None:
        self.accounts[a.user_id] = a
        if a.username:
            self.by_username[a.username.lower()] = ("user", a.user_id)
        if a.phone:
            self.by_phone[a.phone] = a.user_id
        if a.bot_token:
            self.by_token[a.bot_token] = a.user_id

    def _index_message(self, m: Message) -> None:
        self.history.setdefault(_dialog_key(m), []).append(m.id)
        for uid in self._participants(m):
            d = self.dialogs.setdefault(uid, {})
            d[self.peer_for(m, uid)] = m.id
            if m.from_id != uid:
                self.inbox.setdefault(uid, []).append(m.id)

    # ------------------------------------------------------------------ accounts -----
    def create_account(self, kind: str, username: str | None = None, first_name: str | None = None,
                       last_name: str | None = None, phone: str | None = None, simulated: bool = False,
                       provision_key: bool = False, user_id: int | None = None) -> Account:
        if kind not in ("bot", "user"):
            raise WorldError(400, "KIND_INVALID")
        uid = user_id or self.next_user_id
        if uid in self.accounts:
            raise WorldError(400, "USER_ID_OCCUPIED")
        self.next_user_id = max(self.next_user_id, uid + 1)
        if username is None:
            username = ("bot%d_bot" % uid) if kind == "bot" else ("user%d" % uid)
        if username and username.lower() in self.by_username:
            raise WorldError(400, "USERNAME_OCCUPIED")
        if kind == "user":
            phone = _norm_phone(phone) if phone else "99966%05d" % (uid % 100000)
            if phone in self.by_phone:
                raise WorldError(400, "PHONE_NUMBER_OCCUPIED")
        else:
            phone = None
        a = Account(user_id=uid, kind=kind, username=username or None,
                    first_name=first_name or ("Bot %d" % uid if kind == "bot" else "User %d" % uid),
                    last_name=last_name, phone=phone,
                    bot_token=("%d:%s" % (uid, secrets.token_urlsafe(26))) if kind == "bot" else None,
                    access_hash=int.from_bytes(os.urandom(8), "little", signed=True),
                    simulated=simulated, created=int(time.time()))
        self._index_account(a)
        self._start_log(self.user_events, "u", uid)
        a.pts = 1
        if provision_key:
            a.provisioned_key_id = self.add_auth_key(os.urandom(256), uid)
        self.store.put_account(a)
        return a

    def _start_log(self, logs: dict, owner_kind: str, owner_id: int) -> None:
        """pts logs start with a no-op event at pts 1: clients treat pts 0 as "no state"
        (Telethon's NO_SEQ), so a real account or channel never has pts 0."""
        now = int(time.time())
        logs[owner_id] = [(1, "noop", [], now)]
        self.store.put_event(owner_kind, owner_id, 1, "noop", [], now)

    def add_auth_key(self, key: bytes, user_id: int | None = None) -> int:
        key_id = AuthKey(key).key_id
        self.auth_keys[key_id] = [key, user_id]
        self.store.put_auth_key(key_id, key, user_id, int(time.time()))
        return key_id

    def bind_key(self, key_id: int, user_id: int | None) -> None:
        rec = self.auth_keys[key_id]
        rec[1] = user_id
        self.store.put_auth_key(key_id, rec[0], user_id, int(time.time()))

    def provisioned_key(self, a: Account) -> bytes | None:
        if a.provisioned_key_id is None:
            return None
        rec = self.auth_keys.get(a.provisioned_key_id)
        return rec[0] if rec else None

    def account(self, user_id: int) -> Account:
        a = self.accounts.get(user_id)
        if a is None:
            raise WorldError(400, "USER_ID_INVALID")
        return a

    def login_phone(self, phone: str) -> Account:
        """Sign-in with a phone: unknown numbers are registered on the fly (documented)."""
        phone = _norm_phone(phone)
        uid = self.by_phone.get(phone)
        if uid is not None:
            return self.accounts[uid]
        return self.create_account("user", phone=phone, first_name="User " + phone[-4:])

    # ------------------------------------------------------------------ chats --------
    def create_chat(self, kind: str, title: str, member_ids, admin_ids=(), creator_id=None,
                    username: str | None = None) -> Chat:
        if kind not in ("group", "channel", "supergroup"):
            raise WorldError(400, "CHAT_KIND_INVALID")
        member_ids = [int(m) for m in member_ids]
        for uid in list(member_ids) + list(admin_ids):
            self.account(int(uid))
        if username and username.lower() in self.by_username:
            raise WorldError(400, "USERNAME_OCCUPIED")
        c = Chat(chat_id=self.next_chat_id, kind=kind, title=title,
                 access_hash=int.from_bytes(os.urandom(8), "little", signed=True),
                 date=int(time.time()), username=username)
        self.next_chat_id += 1
        self.chats[c.chat_id] = c
        if username:
            self.by_username[username.lower()] = (c.peer_kind, c.chat_id)
        if c.is_channel:
            self._start_log(self.chan_events, "c", c.chat_id)
            c.pts = 1
        self.store.put_chat(c)
        creator_id = creator_id if creator_id is not None else (list(admin_ids) or member_ids or [None])[0]
        for uid in dict.fromkeys(list(member_ids) + [int(a) for a in admin_ids]):
            role = "creator" if uid == creator_id else ("admin" if uid in admin_ids else "member")
            self.add_member(c, uid, role)
        return c

    def add_member(self, c: Chat, user_id: int, role: str = "member") -> None:
        c.members[user_id] = role
        self.user_chats.setdefault(user_id, set()).add(c.chat_id)
        self.dialogs.setdefault(user_id, {}).setdefault((c.peer_kind, c.chat_id), 0)
        self.store.put_member(c.chat_id, user_id, role)

    def chat(self, chat_id: int, kind: str | None = None) -> Chat:
        c = self.chats.get(chat_id)
        if c is None or (kind is not None and c.peer_kind != kind):
            raise WorldError(400, "CHANNEL_INVALID" if kind == "channel" else "CHAT_ID_INVALID")
        return c

    def member_chat(self, user_id: int, kind: str, chat_id: int) -> Chat:
        c = self.chat(chat_id, kind)
        if user_id not in c.members:
            raise WorldError(400 if kind == "chat" else 406, "CHAT_ID_INVALID" if kind == "chat" else "CHANNEL_PRIVATE")
        return c

    def check_peer(self, kind: str, ident: int) -> None:
        if kind == "user":
            self.account(ident)
        else:
            self.chat(ident, kind)

    # ------------------------------------------------------------------ messages -----
    def _participants(self, m: Message):
        if m.peer_kind == "user":
            return (m.from_id,) if m.from_id == m.peer_id else (m.from_id, m.peer_id)
        c = self.chats.get(m.peer_id)
        return tuple(c.members) if c else ()

    def participants(self, m: Message):
        return self._participants(m)

    def peer_for(self, m: Message, viewer: int) -> tuple[str, int]:
        """The dialog a message belongs to, as `viewer` sees it."""
        if m.peer_kind == "user":
            return ("user", m.peer_id if m.from_id == viewer else m.from_id)
        return (m.peer_kind, m.peer_id)

    def new_file_id(self) -> int:
        fid = self.next_file_id
        self.next_file_id += 1
        self.store.put_meta("next_file_id", self.next_file_id)
        return fid

    def post_message(self, sender_id: int, kind: str, ident: int, text: str = "", *, reply_to=None,
                     media=None, grouped_id=None, fwd=None, origin=None, random_id=None,
                     entities=None) -> tuple:
        """Create a message from `sender_id` in dialog (kind, ident) as the sender sees it and
        deliver it. Returns (message, pts for the sender's response, pts_count)."""
        sender = self.account(sender_id)
        post = False
        if kind == "user":
            self.account(ident)
        else:
            c = self.member_chat(sender_id, kind, ident)
            if c.broadcast:
                if c.members.get(sender_id) not in ("creator", "admin"):
                    raise WorldError(403, "CHAT_WRITE_FORBIDDEN")
                post = True
        if text is None:
            text = ""
        if not text and not media:
            raise WorldError(400, "MESSAGE_EMPTY")
        if len(text) > (1024 if media else 4096):
            raise WorldError(400, "MEDIA_CAPTION_TOO_LONG" if media else "MESSAGE_TOO_LONG")
        if reply_to is not None and reply_to not in self.messages:
            reply_to = None
        m = Message(id=self.next_msg_id, from_id=sender.user_id, peer_kind=kind, peer_id=ident,
                    date=int(time.time()), text=text, reply_to=reply_to, media=media,
                    grouped_id=grouped_id, fwd=fwd, post=post, entities=entities or None)
        self.next_msg_id += 1
        self.messages[m.id] = m
        self.store.put_message(m)
        self._index_message(m)
        self.messages_routed += 1
        pts_by_user, chan_pts = self._log_event(m, "new", [m.id])
        if self.hub is not None:
            self.hub.on_new_message(m, pts_by_user, chan_pts, origin)
        for fn in self.listeners:
            fn(m)
        return m, (chan_pts if chan_pts is not None else pts_by_user.get(sender_id, 0))

    def _log_event(self, m: Message, kind: str, ids: list):
        now = int(time.time())
        if m.peer_kind == "channel":
            c = self.chats[m.peer_id]
            c.pts += 1
            self.chan_events.setdefault(c.chat_id, []).append((c.pts, kind, ids, now))
            self.store.put_event("c", c.chat_id, c.pts, kind, ids, now)
            self.store.set_chat_pts(c.chat_id, c.pts)
            return {}, c.pts
        pts_by_user = {}
        for uid in self._participants(m):
            a = self.accounts.get(uid)
            if a is None:
                continue
            a.pts += 1
            self.user_events.setdefault(uid, []).append((a.pts, kind, ids, now))
            self.store.put_event("u", uid, a.pts, kind, ids, now)
            self.store.set_account_pts(uid, a.pts)
            pts_by_user[uid] = a.pts
        return pts_by_user, None

    def get_message(self, viewer: int, msg_id: int) -> Message | None:
        m = self.messages.get(msg_id)
        if m is None or m.deleted or viewer not in self._participants(m):
            return None
        return m

    def edit_message(self, editor_id: int, kind: str, ident: int, msg_id: int, text=None, media=None,
                     origin=None, entities=None):
        m = self.get_message(editor_id, msg_id)
        if m is None or self.peer_for(m, editor_id) != (kind, ident):
            raise WorldError(400, "MESSAGE_ID_INVALID")
        if m.from_id != editor_id:
            raise WorldError(403, "MESSAGE_AUTHOR_REQUIRED")
        if text is not None:
            if text == m.text and media is None:
                raise WorldError(400, "MESSAGE_NOT_MODIFIED")
            m.text = text
        if media is not None:
            m.media = media
        if text is not None:
            m.entities = entities or None
        m.edit_date = int(time.time())
        self.store.put_message(m)
        pts_by_user, chan_pts = self._log_event(m, "edit", [m.id])
        if self.hub is not None:
            self.hub.on_edit_message(m, pts_by_user, chan_pts, origin)
        return m, (chan_pts if chan_pts is not None else pts_by_user.get(editor_id, 0))

    def delete_messages(self, user_id: int, ids, channel_id: int | None = None, origin=None):
        """Delete for everyone (revoke). Returns (pts, pts_count) for the caller."""
        ids = [int(i) for i in ids]
        found = []
        for i in ids:
            m = self.get_message(user_id, i)
            if m is None:
                continue
            if (m.peer_kind == "channel") != (channel_id is not None):
                continue
            if channel_id is not None and m.peer_id != channel_id:
                continue
            if m.from_id != user_id and m.peer_kind != "user":
                c = self.chats[m.peer_id]
                if c.members.get(user_id) not in ("creator", "admin"):
                    raise WorldError(403, "MESSAGE_DELETE_FORBIDDEN")
            found.append(m)
        if not found:
            if channel_id is not None:
                return self.chats[channel_id].pts, 0
            return self.account(user_id).pts, 0
        for m in found:
            m.deleted = True
            self.store.put_message(m)
        # One event per dialog, covering all ids deleted there.
        groups: dict = {}
        for m in found:
            groups.setdefault(_dialog_key(m), []).append(m)
        my_pts, my_count = 0, 0
        for _key, ms in groups.items():
            first = ms[0]
            del_ids = [m.id for m in ms]
            pts_by_user, chan_pts = self._log_event(first, "delete", del_ids)
            if self.hub is not None:
                self.hub.on_delete_messages(first, del_ids, pts_by_user, chan_pts, origin)
            if chan_pts is not None:
                my_pts, my_count = chan_pts, 1
            elif user_id in pts_by_user:
                my_pts, my_count = pts_by_user[user_id], 1
        return my_pts, my_count

    # ------------------------------------------------------------------ reads --------
    def history_ids(self, viewer: int, kind: str, ident: int) -> list:
        if kind == "user":
            a, b = sorted((viewer, ident))
            return self.history.get(("p", a, b), [])
        return self.history.get((kind, ident), [])

    def get_history(self, viewer: int, kind: str, ident: int, offset_id=0, add_offset=0, limit=100,
                    max_id=0, min_id=0) -> tuple[list, int]:
        """Newest first, Telegram semantics for offset_id/add_offset/limit/max_id/min_id.
        Returns (messages, total count)."""
        ids = [i for i in self.history_ids(viewer, kind, ident) if not self.messages[i].deleted]
        total = len(ids)
        end = bisect.bisect_left(ids, offset_id) if offset_id else len(ids)
        end -= add_offset
        limit = max(0, min(int(limit or 100), 100))
        start = max(0, end - limit)
        end = max(0, min(end, len(ids)))
        chosen = ids[start:end]
        if max_id:
            chosen = [i for i in chosen if i < max_id]
        if min_id:
            chosen = [i for i in chosen if i > min_id]
        return [self.messages[i] for i in reversed(chosen)], total

    def received(self, user_id: int, since_id: int = 0, limit: int = 100) -> list:
        ids = self.inbox.get(user_id, [])
        start = bisect.bisect_right(ids, since_id)
        out = []
        for i in ids[start:]:
            m = self.messages[i]
            if not m.deleted:
                out.append(m)
                if len(out) >= limit:
                    break
        return out

    def difference(self, user_id: int, pts: int, limit: int = 1000):
        """Events after `pts` in the user's log: (events, final pts, is_slice)."""
        events = self.user_events.get(user_id, [])
        start = max(0, pts)
        chunk = events[start: start + limit]
        return chunk, (chunk[-1][0] if chunk else pts), start + limit < len(events)

    def channel_difference(self, chat_id: int, pts: int, limit: int = 100):
        events = self.chan_events.get(chat_id, [])
        start = max(0, pts)
        chunk = events[start: start + limit]
        return chunk, (chunk[-1][0] if chunk else pts), start + limit < len(events)

    def channels_updated_since(self, user_id: int, date: int) -> list:
        out = []
        for cid in self.user_chats.get(user_id, ()):
            c = self.chats.get(cid)
            if c is None or not c.is_channel:
                continue
            evs = self.chan_events.get(cid)
            if evs and evs[-1][3] >= date:
                out.append(c)
        return out

    def resolve_username(self, username: str):
        hit = self.by_username.get(username.lstrip("@").lower())
        if hit is None:
            raise WorldError(400, "USERNAME_NOT_OCCUPIED")
        return hit


def _norm_phone(phone: str) -> str:
    return "".join(ch for ch in str(phone) if ch.isdigit())

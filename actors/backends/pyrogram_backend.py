"""PyrogramBackend: one Pyrogram (kurigram) client per account, many requests in flight.

Why an in-memory storage: Pyrogram's file session is an SQLite database ("database is locked"
when a leftover process still holds it, Pyrogram #294). Here the storage is SQLite in memory,
owned by the one client, and exported to the store as a plain dict (auth key, DC address, user,
update state, a bounded set of peers) so a restarted backend resumes without a new login and
recovers missed updates through GetDifference (`skip_updates=False`).

Library settings and why:
- FloodWait always surfaces: `sleep_threshold=0`, and because many methods pass a hard-coded
  `sleep_threshold=60` to `invoke`, every Session this client creates is switched to
  `_NoFloodSleepSession`, whose `invoke` forces 0 (confined to this module: the class is set
  only on sessions of `_FleetPyrogramClient`). It also caps Pyrogram's silent retries on
  network errors (10 by default, one second apart), so failures reach the circuit breaker.
- `parse_mode=DISABLED`: texts are sent literally; `fetch_replies/topics/stories=False`: no
  extra requests while parsing an incoming message; a small message cache (kurigram's default
  10,000 messages per client is most of its memory).
- Reconnects are seen through `connect_handler` (counted, then `recover_gaps()` catches up).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time

from pyrogram import Client, enums, errors, raw, utils
from pyrogram import types as ptypes
from pyrogram.handlers import MessageHandler
from pyrogram.connection import Connection
from pyrogram.session import Session
from pyrogram.session.auth import Auth
from pyrogram.storage import UpdateState

from actors.backends.base import (PEER_ERRORS, AsyncioBackend, LoginFailed, SessionCorrupted,
                                  describe)
from actors.backends.readgate import ReadGate, gated
from messages.telegram import (DeleteMessages, EditText, ForwardMessages, IncomingMessage,
                               MediaRef, SendMedia, SendText)
from system import resume

log = logging.getLogger("tgfleet.backend.pyrogram")

MAX_PEERS = 400               # peers exported with the session (the store keeps <= 64 KiB)
MAX_RETRIES = 2               # Pyrogram's own retries of a request after a network error
TELEGRAM_DC2 = ("149.154.167.51", 443)     # Pyrogram's default for a new session
TOKEN_ERRORS = (errors.AccessTokenInvalid, errors.AccessTokenExpired)
SESSION_FIELDS = ("dc_id", "server_address", "port", "api_id", "test_mode", "auth_key", "date",
                  "user_id", "is_bot")


class PeerUnknown(LookupError):
    """A marked chat id this account cannot resolve."""


class BadAction(ValueError):
    """An action that can never succeed as given."""


def classify(exc: BaseException) -> tuple:
    """(error_kind, flood_wait_s, text) of an exception raised while executing an action."""
    if isinstance(exc, errors.Flood):
        seconds = max(1, exc.value) if isinstance(exc.value, int) else 1
        return "flood_wait", seconds, f"FLOOD_WAIT_{seconds}"
    if isinstance(exc, PeerUnknown):
        return "peer_invalid", 0, str(exc)
    if isinstance(exc, errors.RPCError):
        text = str(exc)[:300]
        code = exc.CODE or 0
        if code >= 500 or code < 0:
            return "network", 0, text
        if (exc.ID or "") in PEER_ERRORS or isinstance(exc, errors.PeerIdInvalid):
            return "peer_invalid", 0, text
        return "rpc_fatal", 0, text
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout", 0, describe(exc)
    if isinstance(exc, (ConnectionError, OSError)):
        return "network", 0, describe(exc)
    return "rpc_fatal", 0, describe(exc)


class _NoFloodSleepSession(Session):
    """A Pyrogram Session whose invoke never sleeps on a FloodWait and retries little."""

    async def invoke(self, query, retries: int = Session.MAX_RETRIES,
                     timeout: float = Session.WAIT_TIMEOUT, sleep_threshold: float = 0,
                     retry_delay: float = Session.RETRY_DELAY):
        return await super().invoke(query, retries=min(retries, MAX_RETRIES), timeout=timeout,
                                    sleep_threshold=0, retry_delay=retry_delay)


def _update_scope(upd) -> int:
    """The state an update counts in, as Pyrogram decides it: its message's channel, else its
    own channel_id (as Pyrogram stores a channel's state), else 0 (the common state)."""
    channel_id = getattr(getattr(getattr(upd, "message", None), "peer_id", None),
                         "channel_id", None) or getattr(upd, "channel_id", None)
    return utils.get_channel_id(channel_id) if channel_id else 0


def _applying_floors(updates) -> dict:
    """Floors of what one `handle_updates(updates)` call counts in the stored state (the
    position each update carries; those without one set none)."""
    if isinstance(updates, (raw.types.Updates, raw.types.UpdatesCombined)):
        items = updates.updates
    elif isinstance(updates, (raw.types.UpdateShortMessage, raw.types.UpdateShortChatMessage)):
        items = [updates]
    else:
        return {}
    floors: dict = {}
    for upd in items:
        resume.add(floors, resume.point(_update_scope(upd), getattr(upd, "pts", None),
                                        getattr(upd, "pts_count", None), {}))
    return floors


class _FleetPyrogramClient(Client):
    """pyrogram.Client with its session restored from / exported to a dict, pointed at the
    configured server, and whose sessions never sleep on flood waits."""

    def __init__(self, *args, fleet_body: dict | None = None, fleet_server: dict | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._fleet_body = fleet_body
        self._fleet_server = fleet_server
        self.fleet_applying: dict = {}       # call number -> floors (handle_updates)
        self._fleet_calls = 0
        self.fleet_on_recovery = None        # called with the stored states a recovery starts from

    async def recover_gaps(self, ids=None):
        """Pyrogram's catch-up (at start, and from its watchdog after a quiet spell) queues
        what it fetches without a position (pts_count -1); tell the backend the states it
        fetches from first: a channel stored after the client started, or the state a fresh
        login stored, was not in what the backend read at start (found in review: such
        messages held back no saved state)."""
        states = {int(st.id): int(st.pts) for st in await self.storage.get_update_states(ids)
                  if st.pts is not None}
        if self.fleet_on_recovery is not None:
            self.fleet_on_recovery(states)
        token = RECOVERING_FROM.set(states)   # this task's recovery (two may overlap)
        try:
            return await super().recover_gaps(ids)
        finally:
            RECOVERING_FROM.reset(token)

    async def handle_updates(self, updates):
        """Pyrogram counts each update in its stored state before it queues it for the
        dispatcher, and for some it makes a request in between (GetDifference for a short
        message, GetChannelDifference for a channel message from a "min" peer). Meanwhile the
        update is neither queued nor in a worker's hands, so a session export would pass it
        (found in review): its position is kept here until the call is over (resume.py)."""
        floors = _applying_floors(updates)
        if not floors:
            return await super().handle_updates(updates)
        self._fleet_calls += 1
        key = self._fleet_calls
        self.fleet_applying[key] = floors
        try:
            return await super().handle_updates(updates)
        finally:
            del self.fleet_applying[key]

    async def get_session(self, *args, **kwargs):
        session = await super().get_session(*args, **kwargs)
        if type(session) is Session:
            session.__class__ = _NoFloodSleepSession
        return session

    async def load_session(self):
        storage = self.storage
        await storage.open()
        if self._fleet_body:
            await restore_storage(storage, self._fleet_body)
        server = self._fleet_server
        if server:
            await storage.server_address(server["host"])
            await storage.port(int(server["port"]))
        if await storage.auth_key() is None:
            host, port = (server["host"], int(server["port"])) if server else TELEGRAM_DC2
            await storage.dc_id(2)
            await storage.api_id(self.api_id)
            await storage.test_mode(False)
            await storage.date(0)
            await storage.server_address(host)
            await storage.port(port)
            await storage.auth_key(await Auth(self, 2, host, port, False).create())
            await storage.user_id(None)
            await storage.is_bot(None)
        elif not await storage.api_id():
            await storage.api_id(self.api_id)


async def restore_storage(storage, body: dict) -> None:
    try:
        key = body.get("auth_key")
        if key is not None and (not isinstance(key, bytes) or len(key) != 256):
            raise SessionCorrupted("corrupted session: the auth key is not 256 bytes")
        for name in SESSION_FIELDS:
            if name in body:
                await getattr(storage, name)(body[name])
        states = [UpdateState(int(r[0]), r[1], r[2], r[3], r[4]) for r in body.get("states") or ()]
        if states:
            await storage.set_update_state(states)
        peers = [(int(r[0]), int(r[1]), r[2], r[3]) for r in body.get("peers") or ()]
        if peers:
            await storage.update_peers(peers)
        names = [(int(r[0]), list(r[1])) for r in body.get("usernames") or ()]
        if names:
            await storage.update_usernames(names)
    except SessionCorrupted:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SessionCorrupted(f"corrupted session: {describe(exc)}") from exc


async def export_storage(storage) -> dict:
    body = {name: await getattr(storage, name)() for name in SESSION_FIELDS}
    body["test_mode"] = bool(body["test_mode"])
    body["is_bot"] = None if body["is_bot"] is None else bool(body["is_bot"])
    body["states"] = [[s.id, s.pts, s.qts, s.date, s.seq]
                      for s in await storage.get_update_states()]
    conn = storage.conn
    peers = conn.execute("SELECT id, access_hash, type, phone_number FROM peers "
                         "ORDER BY last_update_on DESC LIMIT ?", (MAX_PEERS,)).fetchall()
    body["peers"] = [list(p) for p in peers]
    ids = [p[0] for p in peers]
    names: dict = {}
    if ids:
        marks = ", ".join("?" for _ in ids)
        for peer_id, username in conn.execute(
                f"SELECT id, username FROM usernames WHERE id IN ({marks})", ids):
            names.setdefault(peer_id, []).append(username)
    body["usernames"] = [[k, v] for k, v in names.items()]
    return body


MAX_RECOVERED = 4096            # recovered updates remembered before the handled ones are dropped
# The stored states the recovery running in this task started from (set by recover_gaps; a
# context variable because a reconnect's recovery may overlap the watchdog's).
RECOVERING_FROM: contextvars.ContextVar = contextvars.ContextVar("tgfleet_recovering_from",
                                                                default=None)


class PyrogramBackend(AsyncioBackend):
    library = "pyrogram"
    _resume_base: dict = {}     # per client (lib_open); replaced, never mutated: _note_recovery_start
    _recovered: dict = {}       # id(update) -> (update, states its recovery started from)
    _prune_at = MAX_RECOVERED

    # ---- connect and login (loop thread) --------------------------------------------------
    async def lib_open(self, body):
        cfg = self.cfg
        # Reads from Telegram wait while Pyrogram's dispatcher queue is long (readgate.py).
        self.read_gate = ReadGate(cfg["update_backlog_high"], cfg["update_backlog_low"])
        client = _FleetPyrogramClient(
            f"fleet-{self.name}", api_id=cfg["api_id"], api_hash=cfg["api_hash"],
            in_memory=True, skip_updates=False, sleep_threshold=0,
            parse_mode=enums.ParseMode.DISABLED,
            max_message_cache_size=int(cfg.get("message_cache_size", 100)),
            fetch_replies=False, fetch_topics=False, fetch_stories=False,
            device_model="tgfleet", app_version="tgfleet",
            connection_factory=gated(Connection, self.read_gate),
            fleet_body=body, fleet_server=cfg.get("server"))
        # the handler workers look the queue up by attribute each time
        client.dispatcher.updates_queue = self.read_gate.make_queue(track_taken=True)
        client.add_handler(MessageHandler(self._on_message))
        client.fleet_on_recovery = self._note_recovery_start
        # what this client's recoveries start from (the first runs when its dispatcher starts)
        self._resume_base, self._recovered, self._prune_at = {}, {}, MAX_RECOVERED
        client.dispatcher.updates_queue.on_put = self._note_queued
        client.connect_handler = self._on_connect
        client.disconnect_handler = self._on_disconnect
        self.client = client
        self.clients_created += 1
        self._code_hash = None
        authorized = await client.connect()
        if authorized:
            try:
                await client.invoke(raw.functions.updates.GetState())
            except errors.Unauthorized as exc:
                log.warning("%s: stored session not authorized (%s): logging in again",
                            self.name, exc)
                await client.storage.user_id(None)
                authorized = False
        if authorized:
            await self._finish_start()
            return {"state": "ready", "self_id": client.me.id, "connected": True}
        if cfg["account_kind"] == "bot":
            try:
                await client.sign_in_bot(cfg["token"])
            except TOKEN_ERRORS as exc:
                raise LoginFailed(f"bot token revoked/invalid: {exc.ID}") from exc
            await self._finish_start()
            return {"state": "ready", "self_id": client.me.id, "connected": True}
        try:
            sent = await client.send_phone_number_code(cfg["phone"])
        except (errors.PhoneNumberInvalid, errors.PhoneNumberBanned) as exc:
            raise LoginFailed(f"phone number rejected: {exc.ID}") from exc
        self._code_hash = sent.phone_code_hash
        return {"state": "awaiting_code", "connected": True}

    async def _finish_start(self):
        """What Client.start() does after authorization: update state, me, dispatcher (which
        recovers the gaps since the stored state through GetDifference)."""
        client = self.client
        state = await client.invoke(raw.functions.updates.GetState())
        if not await client.storage.get_update_states(0):
            await client.storage.set_update_state(
                UpdateState(0, state.pts, state.qts, state.date, state.seq))
        client.me = await client.get_me()
        await client.initialize()

    async def lib_sign_in(self, code, password):
        client, phone = self.client, self.cfg["phone"]
        try:
            result = await client.sign_in(phone, self._code_hash, code)
        except errors.SessionPasswordNeeded:
            if not password:
                raise LoginFailed("2-step verification password required: send it with "
                                  "the code (ProvideLoginCode.password)") from None
            try:
                result = await client.check_password(password)
            except errors.RPCError as exc:
                raise LoginFailed(f"sign-in refused: {exc.ID or exc}") from exc
        except errors.RPCError as exc:
            raise LoginFailed(f"sign-in refused: {exc.ID or exc}") from exc
        if not isinstance(result, ptypes.User):
            raise LoginFailed("this phone number has no account yet (sign-up is not supported)")
        await self._finish_start()
        return {"self_id": client.me.id}

    # ---- connection events (loop thread) --------------------------------------------------
    async def _on_connect(self, client, session):
        if session is not client.session or session.is_media:
            return              # the first start (session not assigned yet) or a media DC
        self.sink.push(("reconnected",))
        if client.is_initialized:
            asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self):
        try:
            await self.client.recover_gaps()
        except Exception as exc:
            log.warning("%s: recovering missed updates failed: %s", self.name, describe(exc))

    async def _on_disconnect(self, client, session):
        if session is client.session and not session.is_media:
            self.sink.push(("conn", False))

    # ---- updates (loop thread) ------------------------------------------------------------
    async def _on_message(self, client, message):
        if message.outgoing or message.service:
            return
        item = self.read_gate.queue.last_taken()
        try:
            converted = self._convert(message, self._resume_point(item[0] if item else None))
        except Exception:
            log.exception("%s: cannot convert message %s", self.name, message.id)
            return
        self.push_update(converted)

    def lib_update_alone(self) -> bool:
        """No update waits in the dispatcher's queue (the read gate's) for a handler worker.
        Another worker may be handling one in this iteration too: then each goes alone, which
        happens only while the queue is empty, i.e. at light load."""
        return self.read_gate.queue.qsize() == 0

    def _note_recovery_start(self, states: dict):
        """Add the scopes a recovery starts from to the resume base. A scope already there
        keeps its (older, so safe) state: messages of an earlier recovery may still be queued."""
        base = dict(states)
        base.update(self._resume_base)
        self._resume_base = base          # replaced, never mutated (read by other code paths)

    def _note_queued(self, item):
        """Loop thread, for each update queued for the dispatcher: one queued by a recovery
        (no position: pts_count -1) resumes from the states that recovery started from,
        not from those of the client's start, which can be days older (a successor asked for
        that much would be refused, DifferenceTooLong, and skip ahead). Pyrogram's updates
        take no attributes, so they are remembered here until no longer queued or taken."""
        states = RECOVERING_FROM.get()
        if states is None or not item:      # None: the dispatcher's stop marker for a worker
            return
        upd = item[0]
        if getattr(upd, "pts_count", None) != -1:
            return
        if len(self._recovered) >= self._prune_at:
            self._prune_recovered()
        self._recovered[id(upd)] = (upd, states)

    def _prune_recovered(self):
        """Forget the recovered updates no longer queued or taken. The next prune waits until
        the map has doubled: a recovery queues its whole difference at once, and pruning at
        every put past a fixed size was quadratic (4 s of loop time for 8,000 messages)."""
        live = {id(item[0]) for item in self.read_gate.queue.waiting() if item}
        self._recovered = {k: v for k, v in self._recovered.items() if k in live}
        self._prune_at = max(MAX_RECOVERED, 2 * len(self._recovered))

    def _resume_point(self, upd):
        """(scope, pts) from which Pyrogram's gap recovery fetches this message again
        (resume.point; scope 0, or the channel's id as Pyrogram stores its state)."""
        if upd is None:
            return None
        # updates about a channel that carry no message still count that channel's pts
        scope = _update_scope(upd)
        base = self._resume_base
        recovered = self._recovered.get(id(upd))
        if recovered is not None and recovered[0] is upd and scope in recovered[1]:
            base = recovered[1]
        return resume.point(scope, getattr(upd, "pts", None), getattr(upd, "pts_count", None),
                            base)

    def _convert(self, m, resume_at=None) -> IncomingMessage:
        chat = m.chat
        ctype = chat.type if chat else None
        if ctype in (enums.ChatType.PRIVATE, enums.ChatType.BOT):
            kind = "private"
        elif ctype == enums.ChatType.CHANNEL:
            kind = "channel"
        else:
            kind = "group"
        chat_id = chat.id
        media = None
        if m.photo is not None:
            media = MediaRef("photo", m.photo.file_id, size=int(m.photo.file_size or 0))
        elif m.document is not None:
            media = MediaRef("document", m.document.file_id,
                             file_name=m.document.file_name or "",
                             size=int(m.document.file_size or 0))
        fwd_from = None
        if getattr(m, "forward_origin", None) is not None:
            origin = m.forward_from or m.forward_from_chat
            fwd_from = origin.id if origin is not None else 0
        if m.from_user is not None:
            sender_id, username = m.from_user.id, m.from_user.username or ""
        elif m.sender_chat is not None:
            sender_id, username = m.sender_chat.id, m.sender_chat.username or ""
        else:
            sender_id, username = chat_id, ""
        return IncomingMessage(
            bot=self.name, update_id=f"{chat_id}:{m.id}", chat_id=chat_id, chat_kind=kind,
            message_id=m.id, sender_id=sender_id, text=m.text or m.caption or "",
            date=m.date.timestamp() if m.date else 0.0, received_at=time.time(),
            reply_to=m.reply_to_message_id, media=media,
            grouped_id=int(m.media_group_id) if m.media_group_id else None,
            fwd_from=fwd_from, outgoing=bool(m.outgoing), sender_username=username,
            resume=resume_at)

    # ---- actions (loop thread, many at once) ----------------------------------------------
    async def _resolve(self, chat_id: int) -> int:
        try:
            await self.client.resolve_peer(int(chat_id))
        except (KeyError, ValueError, errors.PeerIdInvalid, errors.ChannelInvalid,
                errors.ChatIdInvalid, errors.UserIdInvalid) as exc:
            raise PeerUnknown(f"unknown chat {chat_id}: not in this account's peer cache and "
                              f"not resolvable ({describe(exc)})") from exc
        return int(chat_id)

    @staticmethod
    def _reply(reply_to):
        return ptypes.ReplyParameters(message_id=reply_to) if reply_to else None

    async def lib_execute(self, action):
        c = self.client
        if isinstance(action, SendText):
            m = await c.send_message(await self._resolve(action.chat_id), action.text,
                                     reply_parameters=self._reply(action.reply_to))
            return (m.id,) if m is not None else ()
        if isinstance(action, SendMedia):
            media = action.media
            if media is None or not media.file_id:
                raise BadAction("SendMedia needs a MediaRef with a file_id")
            send = c.send_photo if media.kind == "photo" else c.send_document
            m = await send(await self._resolve(action.chat_id), media.file_id,
                           caption=action.caption or "",
                           reply_parameters=self._reply(action.reply_to))
            return (m.id,) if m is not None else ()
        if isinstance(action, ForwardMessages):
            # One call for several ids keeps a media group together.
            msgs = await c.forward_messages(await self._resolve(action.to_chat_id),
                                            await self._resolve(action.from_chat_id),
                                            list(action.message_ids))
            msgs = msgs if isinstance(msgs, list) else [msgs]
            return tuple(m.id for m in msgs if m is not None)
        if isinstance(action, EditText):
            m = await c.edit_message_text(await self._resolve(action.chat_id),
                                          action.message_id, action.text)
            return (m.id,) if m is not None else ()
        if isinstance(action, DeleteMessages):
            await c.delete_messages(await self._resolve(action.chat_id),
                                    list(action.message_ids), revoke=True)
            return tuple(action.message_ids)
        raise BadAction(f"{type(action).__name__} is not supported")

    def lib_classify(self, exc):
        return classify(exc)

    # ---- health, reconnect, session ---------------------------------------------------------
    async def lib_health(self):
        await self.client.invoke(raw.functions.updates.GetState())

    def lib_connected(self):
        c = self.client
        return bool(c is not None and c.is_connected and c.session is not None
                    and c.session.is_started.is_set())

    async def lib_reconnect(self):
        session = self.client.session
        if session is not None and not session.is_started.is_set():
            await session.restart()

    def _library_floors(self) -> dict:
        """Floors of the updates Pyrogram has counted in its stored state but not yet handed
        to this backend: being applied (`handle_updates`), queued for its dispatcher, or
        taken by a dispatcher worker."""
        self._prune_recovered()
        floors: dict = {}
        for item in self.read_gate.queue.waiting():
            if item:                        # not a worker's stop marker
                resume.add(floors, self._resume_point(item[0]))
        for applying in list(getattr(self.client, "fleet_applying", {}).values()):
            floors = resume.merge(floors, applying)
        return floors

    async def lib_export(self, floors):
        client = self.client
        if client is None or not client.is_connected:
            return None
        body = await export_storage(client.storage)
        return resume.clamp_pyrogram_body(body, resume.merge(floors(), self._library_floors()))

    async def lib_close(self, floors):
        client = self.client
        if client is None or not client.is_connected:
            return None
        body = None
        if await client.storage.user_id():
            body = await export_storage(client.storage)
            body = resume.clamp_pyrogram_body(body, resume.merge(floors(),
                                                                 self._library_floors()))
        try:
            if client.is_initialized:
                await client.stop()
            else:
                await client.disconnect()
        except Exception as exc:
            log.warning("%s: stop failed: %s", self.name, describe(exc))
        return body

"""TelethonBackend: one Telethon client per account, many requests in flight inside it.

Why an in-memory session (`_FleetSession`): a Telethon SQLite session file is what gives
"database is locked" when two clients share it; here exactly one client exists per backend and
its session lives in memory, exported to the store (auth key, DC address, update state, a
bounded set of entities) so a restarted backend resumes without a new login and catches up
through GetDifference (`catch_up=True`).

Library settings and why:
- `flood_sleep_threshold=0`: every FLOOD_WAIT raises; the rate limiter decides. Telethon also
  remembers a flooded request *type* and raises locally for later requests of that type (to any
  chat); that memory is dropped after each flood so one chat's wait does not block the others.
- `request_retries=1`: no silent internal retries (they sleep 2 s each); the bot retries.
- `parse_mode=None`: texts are sent literally, as TDLib and Pyrogram send them here.
- `_handle_auto_reconnect` is wrapped to count reconnects and to catch up (GetDifference).
No lock anywhere: concurrent calls are batched into MTProto containers by the sender.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time

from telethon import TelegramClient, errors, events, functions, types, utils
from telethon.crypto import AuthKey
from telethon.errors.rpcerrorlist import rpc_errors_dict
from telethon.network import ConnectionTcpFull
from telethon.sessions import MemorySession
from telethon._updates.messagebox import MessageBox

from actors.backends.base import (PEER_ERRORS, AsyncioBackend, LoginFailed, SessionCorrupted,
                                  describe)
from actors.backends.readgate import ReadGate, gated
from actors.backends.telethon_fastpath import FastUpdates, fast_delivered
from messages.telegram import (DeleteMessages, EditText, ForwardMessages, IncomingMessage,
                               MediaRef, SendMedia, SendText)
from system import resume

log = logging.getLogger("tgfleet.backend.telethon")

MAX_ENTITIES = 400          # entities exported with the session (the store keeps <= 64 KiB)
MAX_MEMORY_ENTITIES = 50_000   # entities kept in memory (Telethon's set only ever grows)
FLOOD_ERRORS = (errors.FloodWaitError, errors.FloodPremiumWaitError, errors.SlowModeWaitError,
                errors.FloodTestPhoneWaitError)
TOKEN_ERRORS = (errors.AccessTokenInvalidError, errors.AccessTokenExpiredError)
# Telethon's known errors carry only their base class's message ("BAD_REQUEST"): map each
# class back to Telegram's error id ("PEER_ID_INVALID").
_RPC_IDS = {cls: name for name, cls in rpc_errors_dict.items()}


def rpc_id(exc) -> str:
    """Telegram's error id of a Telethon RPCError (e.g. PHONE_CODE_INVALID)."""
    return _RPC_IDS.get(type(exc)) or exc.message or type(exc).__name__


class PeerUnknown(LookupError):
    """A marked chat id this account cannot resolve (no access hash known, no such chat)."""


class BadAction(ValueError):
    """An action that can never succeed as given (e.g. media without a file id)."""


def classify(exc: BaseException) -> tuple:
    """(error_kind, flood_wait_s, text) of an exception raised while executing an action."""
    if isinstance(exc, FLOOD_ERRORS):
        seconds = max(1, int(exc.seconds or 0))
        return "flood_wait", seconds, f"FLOOD_WAIT_{seconds}"
    if isinstance(exc, PeerUnknown):
        return "peer_invalid", 0, str(exc)
    if isinstance(exc, errors.RPCError):
        name, code = rpc_id(exc), exc.code or 0
        text = f"{name} (code {code})"
        if code >= 500 or code < 0 or isinstance(exc, (errors.ServerError, errors.TimedOutError)):
            return "network", 0, text
        if name in PEER_ERRORS:
            return "peer_invalid", 0, text
        return "rpc_fatal", 0, text
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout", 0, describe(exc)
    if isinstance(exc, (ConnectionError, OSError)):
        return "network", 0, describe(exc)
    return "rpc_fatal", 0, describe(exc)


def pack_media(item) -> str:
    """A Photo/Document as MediaRef.file_id: 'tlphoto:' or 'tldoc:' + id:access_hash:file_ref
    (hex). Telethon's bot-style file ids lose the file reference and fail on current layers'
    photo sizes; this keeps what InputPhoto/InputDocument need. '' if the item lacks them."""
    try:
        prefix = "tlphoto" if isinstance(item, types.Photo) else "tldoc"
        return f"{prefix}:{item.id}:{item.access_hash}:{(item.file_reference or b'').hex()}"
    except AttributeError:
        return ""


def unpack_media(file_id: str):
    """The InputPhoto / InputDocument of a `pack_media` string; BadAction if it is not one."""
    try:
        prefix, ident, access_hash, ref = file_id.split(":")
        cls = {"tlphoto": types.InputPhoto, "tldoc": types.InputDocument}[prefix]
        return cls(int(ident), int(access_hash), bytes.fromhex(ref))
    except (ValueError, KeyError) as exc:
        raise BadAction(f"not a Telethon media reference: {file_id[:40]!r}") from exc


class _FleetSession(MemorySession):
    """Telethon's MemorySession that converts to and from a plain dict for the store, with a
    bounded entity set (a forgotten user is learned again from its next message)."""

    def process_entities(self, tlo):
        super().process_entities(tlo)
        if len(self._entities) > MAX_MEMORY_ENTITIES:
            keep = sorted(self._entities, key=lambda r: r[0] != 0)[:MAX_MEMORY_ENTITIES * 4 // 5]
            self._entities = set(keep)

    def to_body(self) -> dict:
        state, channels = None, []
        for entity_id, st in list(self._update_states.items()):
            if entity_id == 0:
                date = int(st.date.timestamp()) if getattr(st, "date", None) else 0
                state = [int(st.pts), int(st.qts), date, int(st.seq)]
            else:
                channels.append([int(entity_id), int(st.pts)])
        # self-row (id 0) first; a stable order, so an unchanged session encodes the same
        rows = sorted(self._entities, key=lambda r: (r[0] != 0, r[0]))[:MAX_ENTITIES]
        return {"dc_id": int(self.dc_id or 0), "server_address": self.server_address or "",
                "port": int(self.port or 0),
                "auth_key": self.auth_key.key if self.auth_key else None,
                "state": state, "channels": channels,
                "entities": [list(r) for r in rows]}

    @classmethod
    def from_body(cls, body: dict) -> "_FleetSession":
        sess = cls()
        try:
            key = body.get("auth_key")
            if key is not None and (not isinstance(key, bytes) or len(key) != 256):
                raise SessionCorrupted("corrupted session: the auth key is not 256 bytes")
            if body.get("server_address"):
                sess.set_dc(int(body["dc_id"]), str(body["server_address"]), int(body["port"]))
            if key:
                sess.auth_key = AuthKey(key)
            state = body.get("state")
            if state:
                pts, qts, date, seq = (int(x) for x in state)
                sess.set_update_state(0, types.updates.State(
                    pts, qts, datetime.datetime.fromtimestamp(date, tz=datetime.timezone.utc),
                    seq, unread_count=0))
            now = datetime.datetime.now(tz=datetime.timezone.utc)
            for channel_id, pts in body.get("channels") or ():
                sess.set_update_state(int(channel_id),
                                      types.updates.State(int(pts), 0, now, 0, unread_count=0))
            sess._entities = {(int(r[0]), int(r[1]), r[2], r[3], r[4])
                              for r in body.get("entities") or ()}
        except SessionCorrupted:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SessionCorrupted(f"corrupted session: {describe(exc)}") from exc
        return sess


def _stamp(updates, scope, pts) -> None:
    """Mark the updates a difference returned without a position of their own (Telethon gives
    them pts = pts_count = 0) with the state that difference was asked from: a successor's
    GetDifference from there fetches them again (resume.point)."""
    for upd in updates:
        if not (getattr(upd, "pts", 0) and getattr(upd, "pts_count", 0)):
            upd._fleet_from = (scope, pts)


class _StampingMessageBox(MessageBox):
    """Telethon's MessageBox, whose differences mark what they return with where they were
    fetched from. Why: a message fetched by a difference has no position, and the state the
    connection started from was not known for a channel first seen later, nor on a fresh
    login (found in review: such messages held back no saved state). The update loop asks for
    a difference, awaits it and applies it before it asks for the next, so the last request
    asked is the one applied."""

    __slots__ = ("_fleet_asked",)

    def get_difference(self):
        self._fleet_asked = request = super().get_difference()
        return request

    def apply_difference(self, diff, chat_hashes):
        result = super().apply_difference(diff, chat_hashes)
        request = getattr(self, "_fleet_asked", None)
        if request is not None:
            _stamp(result[0], 0, request.pts)
        return result

    def apply_channel_difference(self, request, diff, chat_hashes):
        result = super().apply_channel_difference(request, diff, chat_hashes)
        _stamp(result[0], request.channel.channel_id, request.pts)
        return result


class _FleetClient(TelegramClient):
    """TelegramClient that tells the backend when it reconnected by itself, and then catches
    up: Telethon 1.45's own `_handle_auto_reconnect` only calls get_me() (its catch-up code
    sits after a `return`), so updates sent while the connection was down would wait for the
    next pts gap or the ~15 min no-update deadline. Its differences mark what they return
    (`_StampingMessageBox`)."""

    on_reconnect = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # still empty here: the session's state is loaded into it at connect
        self._message_box = _StampingMessageBox(self._log["messagebox"])

    async def _handle_auto_reconnect(self):
        if self.on_reconnect is not None:
            self.on_reconnect()
        await super()._handle_auto_reconnect()
        await self.catch_up()        # UpdatesTooLong -> the update loop calls GetDifference


def fleet_connection(gate: ReadGate) -> type:
    """Telethon's TCP connection class, gated by GATE (readgate.py), that writes a packet at
    once when nothing is waiting to be written before it.

    Why: Telethon's sender hands each encrypted packet to the connection's send queue, and the
    connection's own send loop writes it on the loop's next iteration. Traced at light load
    (bench/RESULTS.md, seventeenth session), that iteration and the queue's hand-over were part
    of every answer's path. When the queue is empty and the transport has nothing buffered, the
    packet is written here, in the order it would have been written anyway; otherwise it queues
    as before, so the send loop's drain (back-pressure) still applies."""
    base = gated(ConnectionTcpFull, gate)

    class FleetConnection(base):
        async def send(self, data):
            writer = self._writer
            if self._connected and writer is not None and self._send_queue.empty() and \
                    not writer.transport.get_write_buffer_size():
                FleetConnection.direct_writes += 1
                self._send(data)
                return
            await super().send(data)

    FleetConnection.direct_writes = 0      # packets written at once, since the class was made
    FleetConnection.__qualname__ = "FleetConnection"
    return FleetConnection


class TelethonBackend(AsyncioBackend):
    _resume_base: dict = {}     # replaced (never mutated) at each connect: _note_resume_base
    library = "telethon"

    # ---- connect and login (loop thread) --------------------------------------------------
    async def lib_open(self, body):
        cfg = self.cfg
        sess = _FleetSession.from_body(body) if body else _FleetSession()
        server = cfg.get("server")
        if server:
            sess.set_dc(sess.dc_id or 2, server["host"], server["port"])
        # Reads from Telegram wait while Telethon's own update queue is long (readgate.py).
        self.read_gate = ReadGate(cfg["update_backlog_high"], cfg["update_backlog_low"])
        self.connection_class = fleet_connection(self.read_gate)
        client = _FleetClient(sess, cfg["api_id"], cfg["api_hash"], flood_sleep_threshold=0,
                              connection=self.connection_class,
                              catch_up=True, request_retries=1, connection_retries=3,
                              retry_delay=1, auto_reconnect=True,
                              device_model="tgfleet", app_version="tgfleet")
        client.parse_mode = None
        # the update loop and the sender look the queue up by attribute each time
        client._updates_queue = client._sender._updates_queue = self.read_gate.make_queue()
        client.on_reconnect = lambda: self.sink.push(("reconnected",))
        client.add_event_handler(self._on_new_message, events.NewMessage(incoming=True))
        self.fast = FastUpdates(client, self._deliver_fast).install() \
            if cfg["fast_updates"] else None
        self.client = client
        self.clients_created += 1
        await client.connect()
        self._note_resume_base()
        if await client.is_user_authorized():
            me = await client.get_me(input_peer=True)
            return {"state": "ready", "self_id": me.user_id, "connected": True}
        if cfg["account_kind"] == "bot":
            try:
                me = await client.sign_in(bot_token=cfg["token"])
            except TOKEN_ERRORS as exc:
                raise LoginFailed(f"bot token revoked/invalid: {rpc_id(exc)}") from exc
            return {"state": "ready", "self_id": me.id, "connected": True}
        try:
            await client.send_code_request(cfg["phone"])
        except (errors.PhoneNumberInvalidError, errors.PhoneNumberBannedError,
                errors.PhoneNumberUnoccupiedError) as exc:
            raise LoginFailed(f"phone number rejected: {rpc_id(exc)}") from exc
        return {"state": "awaiting_code", "connected": True}

    async def lib_sign_in(self, code, password):
        client = self.client
        try:
            me = await client.sign_in(phone=self.cfg["phone"], code=code)
        except errors.SessionPasswordNeededError:
            if not password:
                raise LoginFailed("2-step verification password required: send it with "
                                  "the code (ProvideLoginCode.password)") from None
            try:
                me = await client.sign_in(password=password)
            except errors.RPCError as exc:
                raise LoginFailed(f"sign-in refused: {rpc_id(exc)}") from exc
        except errors.RPCError as exc:
            raise LoginFailed(f"sign-in refused: {rpc_id(exc)}") from exc
        return {"self_id": me.id}

    # ---- updates (loop thread) ------------------------------------------------------------
    def _note_resume_base(self):
        """The update state this connection catches up from (what the session held when
        `connect()` loaded it): the resume point of messages whose own position is unknown."""
        try:
            self._resume_base = {int(eid): int(st.pts)
                                 for eid, st in self.client.session.get_update_states()}
        except (TypeError, ValueError, AttributeError):
            self._resume_base = {}

    def _resume_point(self, upd, m):
        """(scope, pts) from which GetDifference fetches this message again (resume.point)."""
        scope = m.peer_id.channel_id if isinstance(upd, types.UpdateNewChannelMessage) else 0
        stamp = getattr(upd, "_fleet_from", None)      # fetched by a difference from there
        base = {scope: stamp[1]} if stamp is not None and stamp[0] == scope \
            else self._resume_base
        return resume.point(scope, getattr(upd, "pts", None), getattr(upd, "pts_count", None),
                            base)

    def _deliver_fast(self, updates, upd) -> None:
        """FastUpdates (telethon_fastpath.py): an eligible new message (a private chat or a
        basic group), straight from the receive loop, to the actors."""
        m = upd.message
        peer = m.peer_id
        chat_id = utils.get_peer_id(peer)
        sender_id = m.sender_id or chat_id
        sender = next((u for u in updates.users if u.id == sender_id), None)
        kind = "private" if type(peer) is types.PeerUser else "group"
        self.push_update(self._convert_parts(upd, m, chat_id, kind, sender))

    async def _on_new_message(self, event):
        if fast_delivered(event.original_update):
            return                       # FastUpdates gave it to the actors already
        try:
            message = self._convert(event)
        except Exception:        # a conversion bug must not stop the update loop
            log.exception("%s: cannot convert message %s", self.name,
                          getattr(event.message, "id", "?"))
            return
        jobs = self.push_update_keeping_jobs(message)
        if jobs:
            # Past its push this task is one of our jobs, not a handler that `_snapshot` must
            # wait for, nor one Telethon's disconnect cancels (our loop's stop does).
            self.client._event_handler_tasks.discard(asyncio.current_task())
            await self.run_jobs_here(jobs)

    def engine_stats(self):
        conn = getattr(self, "connection_class", None)
        fast = getattr(self, "fast", None)
        return {**super().engine_stats(), "direct_writes": getattr(conn, "direct_writes", 0),
                "fast_updates": fast.delivered if fast is not None else 0,
                "fast_update_failures": fast.failed if fast is not None else 0}

    def lib_update_alone(self) -> bool:
        """Telethon hands each update to the handlers in a task of its own; such a task stays
        in `_event_handler_tasks` until it has pushed its update (see `_on_new_message`). So
        this handler's task is the only one, and no update waits in the queue in front of
        Telethon's update loop (the read gate's), when the update is alone."""
        client = self.client
        return len(client._event_handler_tasks) <= 1 and client._updates_queue.qsize() == 0

    def _convert(self, event) -> IncomingMessage:
        m = event.message
        kind = "private" if event.is_private else ("group" if event.is_group else "channel")
        return self._convert_parts(event.original_update, m, event.chat_id, kind, m.sender)

    def _convert_parts(self, upd, m, chat_id, kind, sender) -> IncomingMessage:
        """The IncomingMessage of Telethon message M of update UPD in chat CHAT_ID of KIND;
        SENDER: its User, if known (for the username)."""
        resume_at = self._resume_point(upd, m)
        media = None
        # m.media first: a text message (most) skips two properties' isinstance chains
        if m.media is not None and (m.photo is not None or m.document is not None):
            item = m.photo if m.photo is not None else m.document
            file = m.file
            media = MediaRef("photo" if m.photo is not None else "document", pack_media(item),
                             file_name=(file.name or "") if file and m.document else "",
                             size=int(file.size or 0) if file else 0)
        fwd = m.fwd_from
        fwd_from = None
        if fwd is not None:
            fwd_from = utils.get_peer_id(fwd.from_id) if fwd.from_id is not None else 0
        return IncomingMessage(
            bot=self.name, update_id=f"{chat_id}:{m.id}", chat_id=chat_id, chat_kind=kind,
            message_id=m.id, sender_id=m.sender_id or chat_id, text=m.message or "",
            date=m.date.timestamp() if m.date else 0.0, received_at=time.time(),
            reply_to=m.reply_to_msg_id, media=media, grouped_id=m.grouped_id,
            fwd_from=fwd_from, outgoing=bool(m.out),
            sender_username=(getattr(sender, "username", None) or "") if sender else "",
            resume=resume_at)

    # ---- actions (loop thread, many at once) ----------------------------------------------
    async def _peer(self, chat_id: int):
        try:
            return await self.client.get_input_entity(int(chat_id))
        except ValueError as exc:
            raise PeerUnknown(f"unknown chat {chat_id}: not in this account's entity cache "
                              f"and not resolvable") from exc

    async def lib_execute(self, action):
        c = self.client
        if isinstance(action, SendText):
            m = await c.send_message(await self._peer(action.chat_id), action.text,
                                     reply_to=action.reply_to, link_preview=False)
            return (m.id,)
        if isinstance(action, SendMedia):
            if action.media is None or not action.media.file_id:
                raise BadAction("SendMedia needs a MediaRef with a file_id")
            m = await c.send_file(await self._peer(action.chat_id),
                                  unpack_media(action.media.file_id),
                                  caption=action.caption or None, reply_to=action.reply_to)
            return (m.id,)
        if isinstance(action, ForwardMessages):
            # One call for several ids keeps a media group together.
            msgs = await c.forward_messages(await self._peer(action.to_chat_id),
                                            list(action.message_ids),
                                            from_peer=await self._peer(action.from_chat_id))
            msgs = msgs if isinstance(msgs, list) else [msgs]
            return tuple(m.id for m in msgs if m is not None)
        if isinstance(action, EditText):
            m = await c.edit_message(await self._peer(action.chat_id), action.message_id,
                                     action.text, link_preview=False)
            return (m.id,)
        if isinstance(action, DeleteMessages):
            await c.delete_messages(await self._peer(action.chat_id),
                                    list(action.message_ids), revoke=True)
            return tuple(action.message_ids)
        raise BadAction(f"{type(action).__name__} is not supported")

    def lib_classify(self, exc):
        request = getattr(exc, "request", None)
        if isinstance(exc, FLOOD_ERRORS) and request is not None:
            # Forget it: Telethon would refuse the next request of this type to ANY chat
            # locally, while the rate limiter owns flood decisions per chat.
            self.client._flood_waited_requests.pop(request.CONSTRUCTOR_ID, None)
        return classify(exc)

    # ---- health, reconnect, session ---------------------------------------------------------
    async def lib_health(self):
        await self.client(functions.updates.GetStateRequest())

    def lib_connected(self):
        """Telethon says "connected" while it is still retrying a lost connection; the
        transport state is the truth."""
        client = self.client
        return bool(client is not None and client.is_connected()
                    and client._sender._transport_connected())

    async def lib_reconnect(self):
        if not self.client.is_connected():
            await self.client.connect()      # the update loop catches up (catch_up=True)
            self._note_resume_base()

    async def _snapshot(self, client, floors):
        """The session body with the current update state, clamped so that it resumes at or
        before every update not finished by the bot (system/resume.py); None if Telethon's
        dispatch did not catch up within a second.

        Telethon applies an update to its state first and hands it to the handlers in a task
        created right after, with nothing awaited in between. So once the handler tasks that
        exist when the state is read have finished, every update that state covers has reached
        `_on_new_message`, and is held by the actor or on its way (what `floors()` covers)."""
        await client._save_states_and_entities()   # Telethon's own pre-save step
        body = client.session.to_body()
        pending = [t for t in client._event_handler_tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=1.0)
            if late:
                return None
        return resume.clamp_telethon_body(body, floors())

    async def lib_export(self, floors):
        client = self.client
        if client is None:
            return None
        return await self._snapshot(client, floors)

    async def lib_close(self, floors):
        client = self.client
        if client is None:
            return None
        authorized = bool(client._authorized) or not client._message_box.is_empty()
        # Taken before disconnecting: disconnect() cancels the handler tasks of updates it has
        # already counted in its state, so its own final state can skip them.
        body = await self._snapshot(client, floors) if authorized else None
        try:
            await client.disconnect()
        except Exception as exc:
            log.warning("%s: disconnect failed: %s", self.name, describe(exc))
        if authorized and body is None:      # dispatch stuck: resume where this connection did
            body = client.session.to_body()
            body = resume.clamp_telethon_body(body, resume.merge(self._resume_base, floors()))
        return body

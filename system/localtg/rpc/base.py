"""RPC plumbing: the handler registry, the per-request context, wrapper unwrapping, errors.

Why: handlers stay small and synchronous (they only touch the in-memory world), each one
registered for a Telethon request class with `@rpc(SomeRequest)`. The dispatcher unwraps
invokeWithLayer / initConnection / invokeWithoutUpdates / invokeAfterMsg, enforces login
(401 AUTH_KEY_UNREGISTERED before authorization, as Telegram does), counts calls, and turns
WorldError into rpc_error and any bug into a logged 500 that never escapes.
"""
from __future__ import annotations

import logging
import time

from telethon.tl import functions as F
from telethon.tl import types as T

from .. import tlcodec
from ..world import WorldError

log = logging.getLogger(__name__)

REGISTRY: dict = {}

_WRAPPERS = (F.InvokeWithLayerRequest, F.InitConnectionRequest, F.InvokeWithoutUpdatesRequest,
             F.InvokeAfterMsgRequest, F.InvokeAfterMsgsRequest, F.InvokeWithTakeoutRequest,
             F.InvokeWithMessagesRangeRequest)
# Requests that do not make a connection the account's update target.
_NO_UPDATES = {"GetConfigRequest", "GetNearestDcRequest", "SaveFilePartRequest",
               "SaveBigFilePartRequest", "GetFileRequest", "GetCdnConfigRequest"}


def rpc(*request_types, auth: bool = True):
    """Register a handler `fn(ctx, request) -> TLObject | RawBytes` for request classes."""
    def deco(fn):
        for t in request_types:
            REGISTRY[t] = (fn, auth)
        return fn
    return deco


class Ctx:
    """What a handler sees: the world, the renderer, the caller's connection and account."""

    __slots__ = ("server", "conn", "world", "render", "user_id", "msg_id")

    def __init__(self, server, conn, msg_id):
        self.server = server
        self.conn = conn
        self.world = server.world
        self.render = server.render
        self.user_id = conn.user_id
        self.msg_id = msg_id

    @property
    def me(self):
        return self.world.accounts[self.user_id]

    def now(self) -> int:
        return int(time.time())

    # -- input objects ----------------------------------------------------------------
    def peer(self, p) -> tuple[str, int]:
        """InputPeer -> (kind, id); raises PEER_ID_INVALID for unknown peers."""
        if isinstance(p, T.InputPeerSelf):
            return "user", self.user_id
        if isinstance(p, (T.InputPeerUser, T.InputPeerUserFromMessage, T.InputUser, T.InputUserFromMessage)):
            kind, ident = "user", p.user_id
        elif isinstance(p, T.InputUserSelf):
            return "user", self.user_id
        elif isinstance(p, T.InputPeerChat):
            kind, ident = "chat", p.chat_id
        elif isinstance(p, (T.InputPeerChannel, T.InputPeerChannelFromMessage, T.InputChannel,
                            T.InputChannelFromMessage)):
            kind, ident = "channel", p.channel_id
        else:
            raise WorldError(400, "PEER_ID_INVALID")
        try:
            self.world.check_peer(kind, ident)
        except WorldError:
            raise WorldError(400, "CHANNEL_INVALID" if kind == "channel" else "PEER_ID_INVALID") from None
        return kind, ident

    def user(self, u) -> int:
        kind, ident = self.peer(u)
        if kind != "user":
            raise WorldError(400, "USER_ID_INVALID")
        return ident

    def channel(self, c) -> int:
        if isinstance(c, T.InputChannelEmpty):
            raise WorldError(400, "CHANNEL_INVALID")
        kind, ident = self.peer(c)
        if kind != "channel":
            raise WorldError(400, "CHANNEL_INVALID")
        return ident

    def check_flood(self, kind: str, ident: int, n: int = 1) -> None:
        """Bots only: Telegram's per-bot / per-chat / per-group limits (flood.py)."""
        if not self.me.is_bot:
            return
        wait = self.server.flood.check_send(self.user_id, (kind, ident), kind != "user", n)
        if wait is not None:
            raise WorldError(420, "FLOOD_WAIT_%d" % wait)


class Dispatcher:
    def __init__(self, server):
        self.server = server
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def dispatch(self, conn, msg_id: int, req) -> None:
        no_updates = False
        while isinstance(req, _WRAPPERS):
            if isinstance(req, F.InvokeWithLayerRequest):
                conn.layer = req.layer
            elif isinstance(req, F.InvokeWithoutUpdatesRequest):
                no_updates = True
            req = req.query
        name = type(req).__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        entry = REGISTRY.get(type(req))
        if entry is None:
            log.info("conn %d: unsupported method %s", conn.id, name)
            self._error(conn, msg_id, 400, "METHOD_NOT_SUPPORTED_BY_LOCALTG", name)
            return
        fn, needs_auth = entry
        if needs_auth and conn.user_id is None:
            self._error(conn, msg_id, 401, "AUTH_KEY_UNREGISTERED", name)
            return
        if not conn.update_target and not no_updates and name not in _NO_UPDATES and conn.user_id is not None:
            self.server.hub.register(conn)
        try:
            result = fn(Ctx(self.server, conn, msg_id), req)
        except WorldError as e:
            self._error(conn, msg_id, e.code, e.message, name)
            return
        except Exception:  # noqa: BLE001 - a handler bug is a 500 for that request only
            log.exception("conn %d: handler for %s failed", conn.id, name)
            self._error(conn, msg_id, 500, "INTERNAL_LOCALTG_ERROR", name)
            return
        conn.enqueue(tlcodec.rpc_result(msg_id, bytes(result)))

    def _error(self, conn, msg_id, code, message, name) -> None:
        key = "%s:%s" % (name, message)
        self.errors[key] = self.errors.get(key, 0) + 1
        conn.enqueue(tlcodec.rpc_error(msg_id, code, message))

"""One TDLib client driven through the JSON interface, turned into the project's messages.

`TdlibSession` answers TDLib's authorization state machine, tracks the connection state, matches
requests to answers by "@extra", and turns `updateNewMessage` into `IncomingMessage`. Everything
it learns is reported through `on_event(kind, payload)`, called from the receive thread:

  'auth_state'  str   TDLib state name, e.g. 'authorizationStateReady'
  'connection'  str   TDLib state name, e.g. 'connectionStateConnecting'
  'message'     IncomingMessage
  'result'      (request_id, dict)   the answer to a request made through a public method
  'error'       dict  {'request_id', 'request', 'code', 'message'[, 'chat_id'][, 'flood_wait']}

Why requests never block: a backend actor must keep answering its mailbox, so every public
method only `send`s and returns a request id; the answer arrives later as 'result' or 'error'.
A flood wait ("Too Many Requests: retry after N") is reported as 'error' with `flood_wait=N` and
is never slept on here: the project's rate limiter decides when to retry.

Why sends are confirmed late: TDLib answers sendMessage/forwardMessages at once with a
*temporary* message (sending_state pending); the real outcome is updateMessageSendSucceeded or
updateMessageSendFailed (where a flood wait usually shows up). 'result' for those requests is
emitted only when every message of the request is confirmed, carrying the final message(s).

Why the receive loop is shared (`_ReceivePump`): `td_receive` is process-wide (it returns the
events of every client) and must not be called from two threads at once. The first session on
a library starts the loop thread, later sessions in the same process join it, and the thread
stops when the last one closes; with one session per process it is simply that session's own
thread. The blocking receive lives only in that thread. `on_event` runs on it too, so it must be
quick (hand the event to a queue or an actor) and must not wait on this session.

Why `recycle`: TDLib's memory only shrinks when an instance is closed (tdlib/td #1704, #2573,
#3671). `recycle()` closes the client and opens a new one on the same data directory; the
authorization lives in that directory's binlog, so the new client logs in without a code.
"""
from __future__ import annotations

import itertools
import logging
import os
import platform
import re
import threading
import time
from typing import Callable, Optional

from actors.backends.tdjson import TdJsonLike
from messages.telegram import IncomingMessage, MediaRef

log = logging.getLogger(__name__)

RECEIVE_TIMEOUT = 0.25          # seconds; bounds how long the loop thread takes to notice a stop
CACHE_LIMIT = 50_000            # chats / usernames remembered per session (oldest dropped first)

AUTH_WAIT_PARAMETERS = "authorizationStateWaitTdlibParameters"
AUTH_WAIT_PHONE = "authorizationStateWaitPhoneNumber"
AUTH_WAIT_CODE = "authorizationStateWaitCode"
AUTH_WAIT_PASSWORD = "authorizationStateWaitPassword"
AUTH_READY = "authorizationStateReady"
AUTH_CLOSED = "authorizationStateClosed"

_FLOOD_PATTERNS = (re.compile(r"retry after (\d+)", re.IGNORECASE),
                   re.compile(r"FLOOD_WAIT_(\d+)"))


def parse_flood_wait(code: int, message: str) -> Optional[int]:
    """Seconds to wait from a TDLib error ("Too Many Requests: retry after N", code 429), or
    None when the error is not a flood wait."""
    for pattern in _FLOOD_PATTERNS:
        match = pattern.search(message or "")
        if match:
            return int(match.group(1))
    if code == 429:
        log.warning("429 without a wait time: %r", message)
        return 0
    return None


def chat_kind_from_type(chat_type: Optional[dict]) -> Optional[str]:
    """'private' | 'group' | 'channel' from a TDLib ChatType object, None if unknown."""
    kind = (chat_type or {}).get("@type")
    if kind in ("chatTypePrivate", "chatTypeSecret"):
        return "private"
    if kind == "chatTypeBasicGroup":
        return "group"
    if kind == "chatTypeSupergroup":
        return "channel" if chat_type.get("is_channel") else "group"
    return None


def _chat_kind_from_id(chat_id: int) -> str:
    """Last-resort guess when TDLib could not describe the chat: ids are marked (users > 0)."""
    return "private" if chat_id > 0 else "group"


def _media_from_content(content: dict) -> Optional[MediaRef]:
    """A photo (largest size) or document as a MediaRef; file_id is TDLib's remote file id,
    which `inputFileRemote` accepts for re-sending."""
    kind = content.get("@type")
    if kind == "messagePhoto":
        sizes = (content.get("photo") or {}).get("sizes") or []
        if not sizes:
            return MediaRef(kind="photo")
        return MediaRef(kind="photo", **_file_fields(sizes[-1].get("photo")))
    if kind == "messageDocument":
        document = content.get("document") or {}
        return MediaRef(kind="document", file_name=document.get("file_name", "") or "",
                        **_file_fields(document.get("document")))
    return None


def _file_fields(file: Optional[dict]) -> dict:
    file = file or {}
    size = file.get("size") or file.get("expected_size") or 0
    return {"file_id": str((file.get("remote") or {}).get("id", "") or ""), "size": int(size)}


def _sender_id(sender: Optional[dict]) -> int:
    sender = sender or {}
    if sender.get("@type") == "messageSenderUser":
        return int(sender.get("user_id", 0))
    if sender.get("@type") == "messageSenderChat":
        return int(sender.get("chat_id", 0))
    return 0


def _forward_origin_id(forward_info: Optional[dict]) -> Optional[int]:
    if not forward_info:
        return None
    origin = forward_info.get("origin") or {}
    for key in ("sender_user_id", "sender_chat_id", "chat_id"):
        if origin.get(key):
            return int(origin[key])
    return 0   # forwarded from a hidden user: forwarded, origin unknown


def _reply_to_id(td_message: dict) -> Optional[int]:
    reply_to = td_message.get("reply_to") or {}
    if reply_to.get("@type") == "messageReplyToMessage" and reply_to.get("message_id"):
        return int(reply_to["message_id"])
    if td_message.get("reply_to_message_id"):            # TDLib before 1.8.21
        return int(td_message["reply_to_message_id"])
    return None


def incoming_from_td(bot: str, td_message: dict, chat_kind: str, sender_username: str = "",
                     received_at: Optional[float] = None) -> IncomingMessage:
    """A TDLib `message` object as the project's IncomingMessage."""
    chat_id = int(td_message["chat_id"])
    message_id = int(td_message["id"])
    content = td_message.get("content") or {}
    text_holder = content.get("text") if content.get("@type") == "messageText" \
        else content.get("caption")
    album = int(td_message.get("media_album_id") or 0)
    return IncomingMessage(
        bot=bot,
        update_id=f"{chat_id}:{message_id}",
        chat_id=chat_id,
        chat_kind=chat_kind,
        message_id=message_id,
        sender_id=_sender_id(td_message.get("sender_id")),
        text=(text_holder or {}).get("text", "") or "",
        date=float(td_message.get("date", 0) or 0),
        received_at=time.time() if received_at is None else received_at,
        reply_to=_reply_to_id(td_message),
        media=_media_from_content(content),
        grouped_id=album or None,
        fwd_from=_forward_origin_id(td_message.get("forward_info")),
        outgoing=bool(td_message.get("is_outgoing", False)),
        sender_username=sender_username,
    )


def _username(user: dict) -> str:
    active = (user.get("usernames") or {}).get("active_usernames") or []
    return active[0] if active else (user.get("username", "") or "")


def _bounded_put(cache: dict, key, value) -> None:
    cache[key] = value
    if len(cache) > CACHE_LIMIT:
        cache.pop(next(iter(cache)))


class _ReceivePump:
    """The one thread per process (per TDLib library) that calls `receive` and routes each event
    by "@client_id" to the session that owns the client. Stops when no client is attached."""

    _registry: dict = {}
    _lock = threading.Lock()          # guards _registry and every pump's _handlers

    def __init__(self, tdjson: TdJsonLike, key) -> None:
        self._tdjson = tdjson
        self._key = key
        self._handlers: dict[int, Callable[[dict], None]] = {}
        self.thread = threading.Thread(target=self._run, name="tdjson-receive", daemon=True)

    @staticmethod
    def key_of(tdjson: TdJsonLike):
        # the pump keeps a reference to tdjson, so id() cannot be reused while it runs
        return getattr(tdjson, "receive_key", None) or ("object", id(tdjson))

    @classmethod
    def attach(cls, tdjson: TdJsonLike, client_id: int,
               handler: Callable[[dict], None]) -> "_ReceivePump":
        key = cls.key_of(tdjson)
        with cls._lock:
            pump = cls._registry.get(key)
            start = pump is None
            if start:
                pump = cls._registry[key] = cls(tdjson, key)
            pump._handlers[client_id] = handler
        if start:
            pump.thread.start()
        return pump

    def detach(self, client_id: int) -> bool:
        """Forget a client; True when no client is left (the thread is then stopping)."""
        with self._lock:
            self._handlers.pop(client_id, None)
            return not self._handlers

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._handlers:
                    if self._registry.get(self._key) is self:
                        del self._registry[self._key]
                    return
            try:
                event = self._tdjson.receive(RECEIVE_TIMEOUT)
            except Exception:
                log.exception("tdjson receive failed")
                continue
            if event is None:
                continue
            client_id = event.get("@client_id")
            with self._lock:
                handler = self._handlers.get(client_id)
            if handler is None:
                log.debug("event %s for unattached client %r dropped",
                          event.get("@type"), client_id)
                continue
            try:
                handler(event)
            except Exception:
                log.exception("handling %s for client %r failed", event.get("@type"), client_id)


class TdlibSession:
    """One TDLib client for one account. See the module docstring for the event contract.

    `account`: {'name': str, 'bot_token': str} for a bot or {'name', 'phone'[, 'password']} for a
    user; 'api_id'/'api_hash' are taken from it when not passed. The databases are off by
    default (measured offline: process RSS 17 MB bare, 24 MB with libtdjson loaded, 42 MB with
    one client up; research notes ~+5 MB per extra client in one process).
    With `autostart` the receive loop and the client start in the constructor, so `on_event`
    may fire before the constructor returns; pass autostart=False and call `start()` if the
    callback needs the session object.
    """

    def __init__(self, tdjson: TdJsonLike, account: dict, data_dir: str,
                 on_event: Callable[[str, object], None],
                 api_id: Optional[int] = None, api_hash: Optional[str] = None,
                 use_message_database: bool = False, use_chat_info_database: bool = False,
                 use_file_database: bool = False, use_test_dc: bool = False,
                 autostart: bool = True) -> None:
        self._tdjson = tdjson
        self.account = dict(account)
        self.name = str(account.get("name", ""))
        self.data_dir = data_dir
        self._on_event = on_event
        self.api_id = int(api_id if api_id is not None else account.get("api_id", 0) or 0)
        self.api_hash = str(api_hash if api_hash is not None
                            else account.get("api_hash", "") or "")
        if not self.api_id or not self.api_hash:
            raise ValueError(f"account {self.name!r}: api_id and api_hash are required")
        self._db_flags = {"use_message_database": bool(use_message_database),
                          "use_chat_info_database": bool(use_chat_info_database),
                          "use_file_database": bool(use_file_database)}
        self.use_test_dc = bool(use_test_dc)

        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._pump: Optional[_ReceivePump] = None
        self._client_id: Optional[int] = None
        self._closed = threading.Event()       # set when the current client reached Closed
        self._reopened = threading.Event()
        self._reopen_requested = False
        self._stopped = False                  # close() was called: do not reopen
        self.auth_state: Optional[str] = None
        self.connection_state: Optional[str] = None
        self.recycles = 0
        self._code: Optional[str] = None
        self._requests: dict[str, dict] = {}   # public request id -> {'type', 'chat_id', ...}
        self._internal: dict[str, tuple] = {}  # internal request id -> (type, purpose, arg)
        self._sending: dict[tuple, tuple] = {}  # (chat, temp message id) -> (request id, index)
        self._chats: dict[int, str] = {}       # chat id -> kind
        self._usernames: dict[int, str] = {}
        self._deferred: dict[int, list] = {}   # chat id -> [(td message, received_at)]
        if autostart:
            self.start()

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def client_id(self) -> Optional[int]:
        return self._client_id

    @property
    def receive_thread(self) -> Optional[threading.Thread]:
        return self._pump.thread if self._pump else None

    @property
    def is_ready(self) -> bool:
        return self.auth_state == AUTH_READY

    def start(self) -> None:
        """Create the TDLib client and attach it to the receive loop (idempotent)."""
        with self._lock:
            if self._client_id is not None:
                return
            self._stopped = False
            self._open_client()

    def _open_client(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        client_id = self._tdjson.create_client_id()
        self._closed = threading.Event()
        self.auth_state = None
        self.connection_state = None
        self._pump = _ReceivePump.attach(self._tdjson, client_id, self._handle)
        self._client_id = client_id
        # A new client stays silent until it gets its first request.
        self._send_internal({"@type": "getOption", "name": "version"}, ("start", None))

    def close(self, timeout: float = 10.0) -> bool:
        """Close the client and stop the receive loop if no other session uses it. Waits up to
        `timeout` for authorizationStateClosed; called from the receive thread (inside
        on_event) it cannot wait and returns False, the close completing in the background."""
        with self._lock:
            self._stopped = True
            self._reopen_requested = False
            client_id, pump, closed = self._client_id, self._pump, self._closed
            if client_id is None:
                return True
        if not closed.is_set():
            self._send_internal({"@type": "close"}, ("close", None))
        if self._on_receive_thread():
            return False
        done = closed.wait(timeout)
        if not done:
            log.warning("%s: client %s not closed after %.1fs; detaching it", self.name,
                        client_id, timeout)
            with self._lock:
                self._client_id = None
                outstanding = self._take_outstanding()
            self._report_outstanding(outstanding, "client did not close in time")
        if pump.detach(client_id) and pump.thread is not threading.current_thread():
            pump.thread.join(timeout=RECEIVE_TIMEOUT * 4 + 1)
        return done

    def recycle(self, timeout: float = 10.0) -> bool:
        """Close the client and open a new one on the same data directory, releasing the memory
        TDLib only gives back on close. Returns True once the new client is attached (its login
        continues in the background); from the receive thread it returns False at once."""
        with self._lock:
            if self._client_id is None or self._stopped:
                raise RuntimeError(f"{self.name}: recycle() on a session that is not running")
            self._reopen_requested = True
            self._reopened = reopened = threading.Event()
        self._send_internal({"@type": "close"}, ("close", None))
        if self._on_receive_thread():
            return False
        return reopened.wait(timeout)

    def _on_receive_thread(self) -> bool:
        return self._pump is not None and self._pump.thread is threading.current_thread()

    # ---- login -----------------------------------------------------------------------------

    def provide_code(self, code: str) -> None:
        """The login code of a user account; sent now if TDLib waits for it, else kept."""
        with self._lock:
            self._code = str(code)
            waiting = self.auth_state == AUTH_WAIT_CODE
        if waiting:
            self._send_code()

    def _send_code(self) -> None:
        with self._lock:
            code, self._code = self._code, None
        if code:
            self._send_internal({"@type": "checkAuthenticationCode", "code": code},
                                ("auth", None))

    def _tdlib_parameters(self) -> dict:
        return {"@type": "setTdlibParameters",
                "use_test_dc": self.use_test_dc,
                "database_directory": self.data_dir,
                "files_directory": "",
                "database_encryption_key": "",
                **self._db_flags,
                "use_secret_chats": False,
                "api_id": self.api_id,
                "api_hash": self.api_hash,
                "system_language_code": "en",
                "device_model": "tgfleet",
                "system_version": platform.system() or "unknown",
                "application_version": "0.1"}

    def _on_auth_state(self, state: str) -> None:
        with self._lock:
            self.auth_state = state
        self._emit("auth_state", state)
        if state == AUTH_WAIT_PARAMETERS:
            self._send_internal(self._tdlib_parameters(), ("auth", None))
        elif state == AUTH_WAIT_PHONE:
            if self.account.get("bot_token"):
                self._send_internal({"@type": "checkAuthenticationBotToken",
                                     "token": self.account["bot_token"]}, ("auth", None))
            elif self.account.get("phone"):
                self._send_internal({"@type": "setAuthenticationPhoneNumber",
                                     "phone_number": self.account["phone"],
                                     "settings": None}, ("auth", None))
            else:
                self._emit("error", {"request_id": None, "request": "login", "code": 0,
                                     "message": "account has neither bot_token nor phone"})
        elif state == AUTH_WAIT_CODE:
            self._send_code()
        elif state == AUTH_WAIT_PASSWORD:
            if self.account.get("password"):
                self._send_internal({"@type": "checkAuthenticationPassword",
                                     "password": self.account["password"]}, ("auth", None))
            else:
                self._emit("error", {"request_id": None, "request": "login", "code": 0,
                                     "message": "2-step verification password required"})
        elif state == AUTH_CLOSED:
            self._on_closed()

    def _on_closed(self) -> None:
        # Taking the outstanding requests and switching to the new client is one step under
        # the lock, so no request can slip to the dead client and wait for an answer forever.
        with self._lock:
            old_id, pump, closed = self._client_id, self._pump, self._closed
            reopen = self._reopen_requested and not self._stopped
            self._reopen_requested = False
            outstanding = self._take_outstanding()
            if reopen:
                self._open_client()
                self.recycles += 1
            else:
                self._client_id = None
            reopened = self._reopened
        self._report_outstanding(outstanding, "TDLib client closed")
        pump.detach(old_id)
        if reopen:
            reopened.set()
        closed.set()

    def _take_outstanding(self) -> tuple:
        """Forget every request of the closing client (caller holds the lock)."""
        pending = list(self._requests.items())
        deferred = list(self._deferred)
        self._requests.clear()
        self._sending.clear()
        self._internal.clear()
        for chat_id in deferred:     # their getChat will never be answered: guess the kind
            _bounded_put(self._chats, chat_id, _chat_kind_from_id(chat_id))
        return pending, deferred

    def _report_outstanding(self, outstanding: tuple, why: str) -> None:
        pending, deferred = outstanding
        for chat_id in deferred:
            self._flush_deferred(chat_id)
        for request_id, info in pending:
            self._emit("error", {"request_id": request_id, "request": info["type"],
                                 "code": 500, "message": why, **_chat_of(info)})

    # ---- public requests -------------------------------------------------------------------

    def send_text(self, chat_id: int, text: str, reply_to: Optional[int] = None) -> str:
        request = {"@type": "sendMessage", "chat_id": int(chat_id),
                   "input_message_content": {"@type": "inputMessageText",
                                             "text": {"@type": "formattedText", "text": text}}}
        if reply_to:
            request["reply_to"] = {"@type": "inputMessageReplyToMessage",
                                   "message_id": int(reply_to)}
        return self._request(request, chat_id=int(chat_id))

    def forward(self, from_chat_id: int, message_ids, to_chat_id: int) -> str:
        return self._request({"@type": "forwardMessages", "chat_id": int(to_chat_id),
                              "from_chat_id": int(from_chat_id),
                              "message_ids": [int(m) for m in message_ids],
                              "send_copy": False, "remove_caption": False},
                             chat_id=int(to_chat_id))

    def edit_text(self, chat_id: int, message_id: int, text: str) -> str:
        return self._request({"@type": "editMessageText", "chat_id": int(chat_id),
                              "message_id": int(message_id),
                              "input_message_content": {
                                  "@type": "inputMessageText",
                                  "text": {"@type": "formattedText", "text": text}}},
                             chat_id=int(chat_id))

    def delete(self, chat_id: int, message_ids) -> str:
        return self._request({"@type": "deleteMessages", "chat_id": int(chat_id),
                              "message_ids": [int(m) for m in message_ids], "revoke": True},
                             chat_id=int(chat_id))

    def probe(self) -> str:
        """Health probe: getOption('version') is answered by the TDLib instance itself, so it
        proves the client and the receive loop are alive (the connection state covers the
        network side)."""
        return self._request({"@type": "getOption", "name": "version"})

    def _request(self, request: dict, chat_id: Optional[int] = None) -> str:
        request_id = f"r{next(self._ids)}"
        with self._lock:
            client_id = self._client_id
            if client_id is None:
                raise RuntimeError(f"{self.name}: {request['@type']} on a closed session")
            self._requests[request_id] = {"type": request["@type"], "chat_id": chat_id,
                                          "waiting": 0, "results": None}
        self._tdjson.send(client_id, {**request, "@extra": request_id})
        return request_id

    def _send_internal(self, request: dict, purpose: tuple) -> None:
        request_id = f"i{next(self._ids)}"
        with self._lock:
            client_id = self._client_id
            if client_id is None:
                log.debug("%s: %s not sent, no client", self.name, request["@type"])
                return
            self._internal[request_id] = (request["@type"],) + purpose
        self._tdjson.send(client_id, {**request, "@extra": request_id})

    # ---- receive side (receive thread only) ------------------------------------------------

    def _emit(self, kind: str, payload: object) -> None:
        try:
            self._on_event(kind, payload)
        except Exception:
            log.exception("%s: on_event(%r) raised", self.name, kind)

    def _handle(self, event: dict) -> None:
        extra = event.get("@extra")
        if extra is not None:
            self._on_answer(str(extra), event)
            return
        kind = event.get("@type")
        if kind == "updateAuthorizationState":
            self._on_auth_state((event.get("authorization_state") or {}).get("@type", ""))
        elif kind == "updateConnectionState":
            state = (event.get("state") or {}).get("@type", "")
            with self._lock:
                self.connection_state = state
            self._emit("connection", state)
        elif kind == "updateNewChat":
            self._learn_chat(event.get("chat") or {})
        elif kind == "updateUser":
            user = event.get("user") or {}
            if user.get("id") and _username(user):
                with self._lock:
                    _bounded_put(self._usernames, int(user["id"]), _username(user))
        elif kind == "updateNewMessage":
            self._on_new_message(event.get("message") or {})
        elif kind == "updateMessageSendSucceeded":
            self._on_send_outcome(event, None)
        elif kind == "updateMessageSendFailed":
            error = event.get("error") or {"code": event.get("error_code", 0),
                                           "message": event.get("error_message", "")}
            self._on_send_outcome(event, error)
        elif kind == "error":
            self._emit("error", self._error_payload(None, "", event, None))

    def _on_answer(self, request_id: str, event: dict) -> None:
        with self._lock:
            internal = self._internal.pop(request_id, None)
            info = self._requests.get(request_id) if internal is None else None
        if internal is not None:
            self._on_internal_answer(request_id, internal, event)
            return
        if info is None:
            log.warning("%s: answer for unknown request %r: %s", self.name, request_id,
                        event.get("@type"))
            return
        if event.get("@type") == "error":
            with self._lock:
                self._requests.pop(request_id, None)
            self._emit("error", self._error_payload(request_id, info["type"], event,
                                                    info.get("chat_id")))
            return
        pending = self._pending_messages(event)
        if not pending:
            with self._lock:
                self._requests.pop(request_id, None)
            self._emit("result", (request_id, event))
            return
        with self._lock:
            info["waiting"] = len(pending)
            info["results"] = list(event.get("messages")) if event.get("@type") == "messages" \
                else [event]
            for index, message in pending:
                self._sending[(int(message["chat_id"]), int(message["id"]))] = \
                    (request_id, index)

    @staticmethod
    def _pending_messages(answer: dict) -> list:
        """(position, message) of the temporary messages in a send answer."""
        if answer.get("@type") == "message":
            messages = [answer]
        elif answer.get("@type") == "messages":
            messages = answer.get("messages") or []
        else:
            return []
        pending = "messageSendingStatePending"
        return [(i, m) for i, m in enumerate(messages)
                if m and (m.get("sending_state") or {}).get("@type") == pending]

    def _on_send_outcome(self, update: dict, error: Optional[dict]) -> None:
        message = update.get("message") or {}
        key = (int(message.get("chat_id", 0)), int(update.get("old_message_id", 0)))
        done = None
        with self._lock:
            entry = self._sending.pop(key, None)
            if entry is None:
                return                     # a send this session did not make, or already failed
            request_id, index = entry
            info = self._requests.get(request_id)
            if info is None:
                return
            if error is None:
                info["results"][index] = message
                info["waiting"] -= 1
                if info["waiting"] <= 0:
                    self._requests.pop(request_id, None)
                    done = info
            else:
                self._requests.pop(request_id, None)
                for other in [k for k, v in self._sending.items() if v[0] == request_id]:
                    del self._sending[other]
        if error is not None:
            payload = self._error_payload(request_id, info["type"], error, info.get("chat_id"))
            payload["message_id"] = int(message.get("id", 0))
            self._emit("error", payload)
        elif done is not None:
            results = done["results"]
            answer = results[0] if done["type"] == "sendMessage" else \
                {"@type": "messages", "total_count": len(results), "messages": results}
            self._emit("result", (request_id, answer))

    def _on_internal_answer(self, request_id: str, internal: tuple, event: dict) -> None:
        request_type, purpose, arg = internal
        if purpose == "getChat":
            if event.get("@type") == "chat":
                self._learn_chat(event)
            else:
                log.warning("%s: getChat(%s) failed: %s; guessing the chat kind from its id",
                            self.name, arg, event.get("message"))
                with self._lock:
                    _bounded_put(self._chats, arg, _chat_kind_from_id(arg))
                self._flush_deferred(arg)
            return
        if event.get("@type") == "error":
            with self._lock:
                closing = self._stopped or self._reopen_requested
            if closing and event.get("code") == 500:
                log.debug("%s: %s aborted by close", self.name, request_type)
                return
            self._emit("error", self._error_payload(request_id, request_type, event, None))

    def _error_payload(self, request_id: Optional[str], request_type: str, error: dict,
                       chat_id: Optional[int]) -> dict:
        code = int(error.get("code", 0) or 0)
        message = str(error.get("message", ""))
        payload = {"request_id": request_id, "request": request_type, "code": code,
                   "message": message}
        if chat_id is not None:
            payload["chat_id"] = chat_id
        flood_wait = parse_flood_wait(code, message)
        if flood_wait is not None:
            payload["flood_wait"] = flood_wait
        return payload

    def _learn_chat(self, chat: dict) -> None:
        if "id" not in chat:
            log.warning("%s: chat without id: %r", self.name, chat)
            return
        chat_id = int(chat["id"])
        kind = chat_kind_from_type(chat.get("type"))
        if kind is None:
            log.warning("%s: unknown chat type %r for %s", self.name, chat.get("type"), chat_id)
            kind = _chat_kind_from_id(chat_id)
        with self._lock:
            _bounded_put(self._chats, chat_id, kind)
        self._flush_deferred(chat_id)

    def _flush_deferred(self, chat_id: int) -> None:
        with self._lock:
            waiting = self._deferred.pop(chat_id, [])
        for td_message, received_at in waiting:
            self._emit_message(td_message, received_at)

    def _on_new_message(self, td_message: dict) -> None:
        if "chat_id" not in td_message or "id" not in td_message:
            log.warning("%s: updateNewMessage without chat_id/id: %r", self.name, td_message)
            return
        if td_message.get("sending_state"):
            return       # our own message still being sent: its outcome is a SendSucceeded
        received_at = time.time()
        chat_id = int(td_message["chat_id"])
        with self._lock:
            known = chat_id in self._chats
            if not known:
                ask = chat_id not in self._deferred
                self._deferred.setdefault(chat_id, []).append((td_message, received_at))
        if known:
            self._emit_message(td_message, received_at)
        elif ask:
            self._send_internal({"@type": "getChat", "chat_id": chat_id}, ("getChat", chat_id))

    def _emit_message(self, td_message: dict, received_at: float) -> None:
        chat_id = int(td_message["chat_id"])
        with self._lock:
            kind = self._chats.get(chat_id) or _chat_kind_from_id(chat_id)
            username = self._usernames.get(_sender_id(td_message.get("sender_id")), "")
        try:
            message = incoming_from_td(self.name, td_message, kind, username, received_at)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("%s: bad message %r: %s", self.name, td_message, exc)
            return
        self._emit("message", message)


def _chat_of(info: dict) -> dict:
    return {"chat_id": info["chat_id"]} if info.get("chat_id") is not None else {}

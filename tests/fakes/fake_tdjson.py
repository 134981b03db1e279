"""FakeTdJson: a FAKE of TDLib's JSON interface, for tests only.

Why a fake: TDLib cannot be pointed at a local server (no custom DC address or RSA key), and
this machine has no route to Telegram, so nothing real can ever log in or deliver a message
here. This fake implements `TdJsonLike` in memory and answers with TDLib-shaped JSON (the shapes
of TDLib 1.8.66 as bundled with python-telegram 2.0.0): it plays the authorization state
machine, answers sendMessage / forwardMessages / editMessageText / deleteMessages / getMe /
getOption / getChat / close, lets a test inject updateNewChat, updateUser, updateNewMessage and
connection-state updates, and can make the next send fail with
429 "Too Many Requests: retry after N".

What it mimics from real TDLib on purpose:
- a new client is silent until its first request, then reports
  authorizationStateWaitTdlibParameters;
- every event carries "@client_id", answers echo the request's "@extra";
- sends answer at once with a *temporary* message (sending_state pending) and confirm later
  with updateMessageSendSucceeded / updateMessageSendFailed (a 429 usually arrives there);
- the login survives close/reopen of the same database directory (TDLib's binlog), so a
  reopened user client goes straight to authorizationStateReady;
- after close every request is answered with error 500.
It also counts overlapping `receive` calls (`concurrent_receives`), which real TDLib forbids.
"""
from __future__ import annotations

import copy
import itertools
import logging
import queue
import re
import threading
import time
from typing import Optional

log = logging.getLogger(__name__)

FAKE_VERSION = "1.8.66"
_BOT_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


def formatted(text: str) -> dict:
    return {"@type": "formattedText", "text": text, "entities": []}


def ok() -> dict:
    return {"@type": "ok"}


def error(code: int, message: str) -> dict:
    return {"@type": "error", "code": code, "message": message}


class _Client:
    def __init__(self, client_id: int) -> None:
        self.id = client_id
        self.started = False
        self.closed = False
        self.auth = "authorizationStateWaitTdlibParameters"
        self.params: dict = {}
        self.me: Optional[dict] = None
        self.chats: dict[int, dict] = {}
        self.messages: dict[tuple, dict] = {}
        self.message_seq = itertools.count(1)

    @property
    def ready(self) -> bool:
        return self.auth == "authorizationStateReady"


class FakeTdJson:
    """In-memory FAKE of the tdjson interface (see the module docstring).

    `login_code`: the code checkAuthenticationCode accepts. `connection_states`: what the fake
    reports after setTdlibParameters (real TDLib offline stays at connectionStateConnecting).
    `requests` records every (client_id, request) sent, for assertions.
    `hold_sends`: sends are accepted (temporary message) but never confirmed, as when offline.
    `ignore_close`: close is answered "ok" but the client never reaches Closed (a hung TDLib).
    """

    def __init__(self, login_code: str = "12345",
                 connection_states=("connectionStateConnecting", "connectionStateReady")) -> None:
        self.login_code = login_code
        self.hold_sends = False
        self.ignore_close = False
        self.connection_states = tuple(connection_states)
        self.requests: list[tuple[int, dict]] = []
        self.executed: list[dict] = []
        self.concurrent_receives = 0
        self.receive_threads: set[str] = set()
        self._lock = threading.RLock()
        self._events: "queue.Queue[dict]" = queue.Queue()
        self._clients: dict[int, _Client] = {}
        self._client_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._authorized_dirs: dict[str, dict] = {}    # database_directory -> me (the "binlog")
        self._fail_next_send: Optional[tuple[int, str]] = None
        self._receiving = 0

    # ---- TdJsonLike ------------------------------------------------------------------------

    def create_client_id(self) -> int:
        with self._lock:
            client_id = next(self._client_ids)
            self._clients[client_id] = _Client(client_id)
            return client_id

    def send(self, client_id: int, request: dict) -> None:
        request = copy.deepcopy(request)
        with self._lock:
            self.requests.append((client_id, request))
            client = self._clients.get(client_id)
            extra = request.get("@extra")
            if client is None:
                log.warning("fake tdjson: request for unknown client %r", client_id)
                return
            if client.closed:
                self._answer(client, extra, error(500, "Request aborted"))
                return
            if not client.started:
                client.started = True
                self._auth(client, "authorizationStateWaitTdlibParameters")
            handler = getattr(self, "_req_" + str(request.get("@type")), None)
            if handler is None:
                self._answer(client, extra, error(
                    400, f'Failed to parse JSON object as TDLib request: Unknown class '
                         f'"{request.get("@type")}"'))
                return
            handler(client, request, extra)

    def receive(self, timeout: float) -> Optional[dict]:
        with self._lock:
            self._receiving += 1
            if self._receiving > 1:
                self.concurrent_receives += 1
            self.receive_threads.add(threading.current_thread().name)
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        finally:
            with self._lock:
                self._receiving -= 1

    def execute(self, request: dict) -> Optional[dict]:
        with self._lock:
            self.executed.append(copy.deepcopy(request))
        if request.get("@type") in ("setLogVerbosityLevel", "setLogStream"):
            return ok()
        return error(400, "The method can't be executed synchronously")

    # ---- test controls ---------------------------------------------------------------------

    def add_chat(self, client_id: int, chat_id: int, kind: str = "private", title: str = "",
                 announce: bool = True) -> dict:
        """A chat the client can see; kind: private | group | supergroup | channel. With
        announce=False the client is not told (so it has to ask getChat)."""
        types = {
            "private": {"@type": "chatTypePrivate", "user_id": chat_id},
            "group": {"@type": "chatTypeBasicGroup", "basic_group_id": -chat_id},
            "supergroup": {"@type": "chatTypeSupergroup",
                           "supergroup_id": -chat_id - 1_000_000_000_000, "is_channel": False},
            "channel": {"@type": "chatTypeSupergroup",
                        "supergroup_id": -chat_id - 1_000_000_000_000, "is_channel": True},
        }
        chat = {"@type": "chat", "id": chat_id, "type": types[kind],
                "title": title or f"chat {chat_id}", "photo": None, "accent_color_id": 0,
                "last_message": None, "positions": [], "unread_count": 0,
                "last_read_inbox_message_id": 0, "last_read_outbox_message_id": 0,
                "unread_mention_count": 0, "is_marked_as_unread": False,
                "has_protected_content": False, "message_auto_delete_time": 0,
                "reply_markup_message_id": 0, "draft_message": None, "client_data": ""}
        with self._lock:
            client = self._clients[client_id]
            client.chats[chat_id] = chat
            if announce:
                self._push(client, {"@type": "updateNewChat", "chat": copy.deepcopy(chat)})
        return chat

    def add_user(self, client_id: int, user_id: int, username: str = "",
                 first_name: str = "") -> dict:
        user = self._user(user_id, first_name or f"user{user_id}", username, bot=False)
        with self._lock:
            self._push(self._clients[client_id], {"@type": "updateUser", "user": user})
        return user

    def inject_message(self, client_id: int, chat_id: int, text: str = "", sender_id: int = 0,
                       photo: bool = False, document: Optional[str] = None,
                       reply_to: Optional[int] = None, media_album_id: int = 0,
                       forward_from: Optional[int] = None, outgoing: bool = False,
                       date: Optional[int] = None) -> dict:
        """Deliver a new message as updateNewMessage; returns the TDLib `message` object."""
        with self._lock:
            client = self._clients[client_id]
            if chat_id not in client.chats:
                raise ValueError(f"chat {chat_id} unknown to the fake: add_chat() it first")
            if photo:
                content = self._photo_content(text)
            elif document is not None:
                content = self._document_content(document, text)
            else:
                content = {"@type": "messageText", "text": formatted(text),
                           "link_preview": None, "link_preview_options": None}
            message = self._message(client, chat_id, sender_id or chat_id, content,
                                    outgoing=outgoing, date=date)
            if reply_to:
                message["reply_to"] = {"@type": "messageReplyToMessage", "chat_id": chat_id,
                                       "message_id": reply_to, "quote": None, "origin": None,
                                       "origin_send_date": 0, "content": None}
            if media_album_id:
                message["media_album_id"] = str(media_album_id)
            if forward_from:
                message["forward_info"] = self._forward_info(forward_from)
            client.messages[(chat_id, message["id"])] = message
            self._push(client, {"@type": "updateNewMessage", "message": copy.deepcopy(message)})
            return message

    def set_connection_state(self, client_id: int, state: str) -> None:
        with self._lock:
            self._push(self._clients[client_id], {"@type": "updateConnectionState",
                                                  "state": {"@type": state}})

    def fail_next_send(self, retry_after: int = 7, via: str = "update") -> None:
        """Make the next sendMessage/forwardMessages fail with 429 "Too Many Requests: retry
        after N": via='update' (TDLib's usual path: the send is accepted, then
        updateMessageSendFailed) or via='response' (the request itself answers the error)."""
        if via not in ("update", "response"):
            raise ValueError(via)
        with self._lock:
            self._fail_next_send = (int(retry_after), via)

    def requests_of_type(self, request_type: str) -> list[dict]:
        with self._lock:
            return [r for _, r in self.requests if r.get("@type") == request_type]

    def client_messages(self, client_id: int, chat_id: int) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(m) for (c, _), m in
                    sorted(self._clients[client_id].messages.items()) if c == chat_id]

    # ---- plumbing --------------------------------------------------------------------------

    def _push(self, client: _Client, event: dict) -> None:
        self._events.put({**event, "@client_id": client.id})

    def _answer(self, client: _Client, extra, answer: dict) -> None:
        event = dict(answer)
        if extra is not None:
            event["@extra"] = extra
        self._push(client, event)

    def _auth(self, client: _Client, state: str, **fields) -> None:
        client.auth = state
        self._push(client, {"@type": "updateAuthorizationState",
                            "authorization_state": {"@type": state, **fields}})

    def _require_ready(self, client: _Client, extra) -> bool:
        if not client.ready:
            self._answer(client, extra, error(401, "Unauthorized"))
            return False
        return True

    def _require_chat(self, client: _Client, chat_id, extra) -> bool:
        if chat_id not in client.chats:
            self._answer(client, extra, error(400, "Chat not found"))
            return False
        return True

    def _login(self, client: _Client, me: dict) -> None:
        client.me = me
        self._authorized_dirs[client.params.get("database_directory", "")] = me
        self._push(client, {"@type": "updateUser", "user": copy.deepcopy(me)})
        self._auth(client, "authorizationStateReady")

    # ---- authorization ---------------------------------------------------------------------

    def _req_setTdlibParameters(self, client: _Client, request: dict, extra) -> None:
        if client.auth != "authorizationStateWaitTdlibParameters":
            self._answer(client, extra, error(400, "Unexpected setTdlibParameters"))
            return
        if not request.get("api_id") or not request.get("api_hash"):
            self._answer(client, extra, error(
                400, "Valid api_id must be provided. Can be obtained at https://my.telegram.org"))
            return
        client.params = request
        known = self._authorized_dirs.get(request.get("database_directory", ""))
        if known is not None:
            self._login(client, copy.deepcopy(known))
        else:
            self._auth(client, "authorizationStateWaitPhoneNumber")
        self._answer(client, extra, ok())
        for state in self.connection_states:
            self._push(client, {"@type": "updateConnectionState", "state": {"@type": state}})

    def _req_checkAuthenticationBotToken(self, client: _Client, request: dict, extra) -> None:
        if client.auth != "authorizationStateWaitPhoneNumber":
            self._answer(client, extra, error(400, "Call to checkAuthenticationBotToken "
                                                   "unexpected"))
            return
        token = str(request.get("token", ""))
        if not _BOT_TOKEN.match(token):
            self._answer(client, extra, error(400, "ACCESS_TOKEN_INVALID"))
            return
        bot_id = int(token.split(":", 1)[0])
        self._answer(client, extra, ok())
        self._login(client, self._user(bot_id, "Fake bot", f"fake{bot_id}_bot", bot=True))

    def _req_setAuthenticationPhoneNumber(self, client: _Client, request: dict, extra) -> None:
        if client.auth != "authorizationStateWaitPhoneNumber":
            self._answer(client, extra, error(400, "Call to setAuthenticationPhoneNumber "
                                                   "unexpected"))
            return
        phone = str(request.get("phone_number", ""))
        client.params["phone"] = phone
        self._answer(client, extra, ok())
        self._auth(client, "authorizationStateWaitCode", code_info={
            "@type": "authenticationCodeInfo", "phone_number": phone,
            "type": {"@type": "authenticationCodeTypeTelegramMessage",
                     "length": len(self.login_code)},
            "next_type": None, "timeout": 0})

    def _req_checkAuthenticationCode(self, client: _Client, request: dict, extra) -> None:
        if client.auth != "authorizationStateWaitCode":
            self._answer(client, extra, error(400, "Call to checkAuthenticationCode unexpected"))
            return
        if str(request.get("code")) != self.login_code:
            self._answer(client, extra, error(400, "PHONE_CODE_INVALID"))
            return
        self._answer(client, extra, ok())
        digits = re.sub(r"\D", "", client.params.get("phone", "")) or "1"
        self._login(client, self._user(int(digits[-9:]), "Fake user", "", bot=False))

    def _req_close(self, client: _Client, request: dict, extra) -> None:
        self._answer(client, extra, ok())
        if self.ignore_close:
            return
        self._auth(client, "authorizationStateClosing")
        client.closed = True
        self._auth(client, "authorizationStateClosed")

    # ---- queries ---------------------------------------------------------------------------

    def _req_getOption(self, client: _Client, request: dict, extra) -> None:
        if request.get("name") == "version":
            self._answer(client, extra, {"@type": "optionValueString", "value": FAKE_VERSION})
        else:
            self._answer(client, extra, {"@type": "optionValueEmpty"})

    def _req_getAuthorizationState(self, client: _Client, request: dict, extra) -> None:
        self._answer(client, extra, {"@type": client.auth})

    def _req_getMe(self, client: _Client, request: dict, extra) -> None:
        if self._require_ready(client, extra):
            self._answer(client, extra, copy.deepcopy(client.me))

    def _req_getChat(self, client: _Client, request: dict, extra) -> None:
        chat_id = request.get("chat_id")
        if self._require_ready(client, extra) and self._require_chat(client, chat_id, extra):
            self._answer(client, extra, copy.deepcopy(client.chats[chat_id]))

    # ---- sending ---------------------------------------------------------------------------

    def _take_failure(self) -> Optional[tuple[int, str]]:
        failure, self._fail_next_send = self._fail_next_send, None
        return failure

    def _req_sendMessage(self, client: _Client, request: dict, extra) -> None:
        chat_id = request.get("chat_id")
        if not (self._require_ready(client, extra)
                and self._require_chat(client, chat_id, extra)):
            return
        content_in = request.get("input_message_content") or {}
        if content_in.get("@type") != "inputMessageText":
            self._answer(client, extra, error(400, "Fake supports only inputMessageText"))
            return
        failure = self._take_failure()
        if failure and failure[1] == "response":
            self._answer(client, extra, error(429, f"Too Many Requests: retry after {failure[0]}"))
            return
        content = {"@type": "messageText", "text": content_in.get("text") or formatted(""),
                   "link_preview": None, "link_preview_options": None}
        temp = self._message(client, chat_id, client.me["id"], content, outgoing=True,
                             pending=True)
        reply_to = request.get("reply_to") or {}
        if reply_to.get("@type") == "inputMessageReplyToMessage":
            temp["reply_to"] = {"@type": "messageReplyToMessage", "chat_id": chat_id,
                                "message_id": reply_to.get("message_id", 0), "quote": None,
                                "origin": None, "origin_send_date": 0, "content": None}
        self._push(client, {"@type": "updateNewMessage", "message": copy.deepcopy(temp)})
        self._answer(client, extra, copy.deepcopy(temp))
        self._settle(client, temp, failure)

    def _req_forwardMessages(self, client: _Client, request: dict, extra) -> None:
        chat_id, from_chat_id = request.get("chat_id"), request.get("from_chat_id")
        if not (self._require_ready(client, extra)
                and self._require_chat(client, chat_id, extra)
                and self._require_chat(client, from_chat_id, extra)):
            return
        failure = self._take_failure()
        if failure and failure[1] == "response":
            self._answer(client, extra, error(429, f"Too Many Requests: retry after {failure[0]}"))
            return
        temps = []
        for message_id in request.get("message_ids") or []:
            source = client.messages.get((from_chat_id, message_id))
            if source is None:
                temps.append(None)    # TDLib: null for a message that can't be forwarded
                continue
            temp = self._message(client, chat_id, client.me["id"],
                                 copy.deepcopy(source["content"]), outgoing=True, pending=True)
            temp["forward_info"] = self._forward_info(_sender_of(source), source["date"])
            temp["media_album_id"] = source.get("media_album_id", "0")
            temps.append(temp)
            self._push(client, {"@type": "updateNewMessage", "message": copy.deepcopy(temp)})
        self._answer(client, extra, {"@type": "messages", "total_count": len(temps),
                                     "messages": copy.deepcopy(temps)})
        for temp in temps:
            if temp is not None:
                self._settle(client, temp, failure)
                failure = None            # a flood wait fails the first message only

    def _settle(self, client: _Client, temp: dict, failure: Optional[tuple[int, str]]) -> None:
        """The later outcome of a temporary message: sent, or failed with a flood wait."""
        if self.hold_sends and not failure:
            return
        if failure:
            err = error(429, f"Too Many Requests: retry after {failure[0]}")
            failed = dict(temp, sending_state={
                "@type": "messageSendingStateFailed", "error": err, "can_retry": True,
                "need_another_sender": False, "need_another_reply_quote": False,
                "need_drop_reply": False, "required_paid_message_star_count": 0,
                "retry_after": float(failure[0])})
            self._push(client, {"@type": "updateMessageSendFailed", "message": failed,
                                "old_message_id": temp["id"], "error": err})
            return
        final = dict(temp, id=self._server_id(client), sending_state=None)
        client.messages[(final["chat_id"], final["id"])] = final
        self._push(client, {"@type": "updateMessageSendSucceeded",
                            "message": copy.deepcopy(final), "old_message_id": temp["id"]})

    def _req_editMessageText(self, client: _Client, request: dict, extra) -> None:
        chat_id, message_id = request.get("chat_id"), request.get("message_id")
        if not (self._require_ready(client, extra)
                and self._require_chat(client, chat_id, extra)):
            return
        message = client.messages.get((chat_id, message_id))
        if message is None:
            self._answer(client, extra, error(400, "Message not found"))
            return
        if not message["is_outgoing"]:
            self._answer(client, extra, error(400, "Message can't be edited"))
            return
        text = (request.get("input_message_content") or {}).get("text") or formatted("")
        message["content"] = {"@type": "messageText", "text": text, "link_preview": None,
                              "link_preview_options": None}
        message["edit_date"] = int(time.time())
        self._push(client, {"@type": "updateMessageContent", "chat_id": chat_id,
                            "message_id": message_id,
                            "new_content": copy.deepcopy(message["content"])})
        self._push(client, {"@type": "updateMessageEdited", "chat_id": chat_id,
                            "message_id": message_id, "edit_date": message["edit_date"],
                            "reply_markup": None})
        self._answer(client, extra, copy.deepcopy(message))

    def _req_deleteMessages(self, client: _Client, request: dict, extra) -> None:
        chat_id = request.get("chat_id")
        if not (self._require_ready(client, extra)
                and self._require_chat(client, chat_id, extra)):
            return
        deleted = [m for m in request.get("message_ids") or []
                   if client.messages.pop((chat_id, m), None) is not None]
        self._answer(client, extra, ok())
        if deleted:
            self._push(client, {"@type": "updateDeleteMessages", "chat_id": chat_id,
                                "message_ids": deleted, "is_permanent": True,
                                "from_cache": False})

    # ---- TDLib-shaped objects --------------------------------------------------------------

    @staticmethod
    def _server_id(client: _Client) -> int:
        return next(client.message_seq) << 20       # TDLib: server message id N is N << 20

    def _message(self, client: _Client, chat_id: int, sender_id: int, content: dict,
                 outgoing: bool = False, pending: bool = False,
                 date: Optional[int] = None) -> dict:
        chat_type = client.chats[chat_id]["type"]
        is_channel = chat_type.get("is_channel", False)
        sender = {"@type": "messageSenderChat", "chat_id": chat_id} if is_channel else \
            {"@type": "messageSenderUser", "user_id": sender_id}
        message_id = self._server_id(client) + (1 if pending else 0)
        return {"@type": "message", "id": message_id, "sender_id": sender, "chat_id": chat_id,
                "sending_state": {"@type": "messageSendingStatePending", "sending_id": 0}
                if pending else None,
                "scheduling_state": None, "is_outgoing": outgoing, "is_pinned": False,
                "is_from_offline": False, "can_be_saved": True, "has_timestamped_media": True,
                "is_channel_post": is_channel, "contains_unread_mention": False,
                "date": int(time.time()) if date is None else date, "edit_date": 0,
                "forward_info": None, "import_info": None, "interaction_info": None,
                "unread_reactions": [], "fact_check": None, "reply_to": None,
                "message_thread_id": 0, "self_destruct_type": None, "self_destruct_in": 0.0,
                "auto_delete_in": 0.0, "via_bot_user_id": 0, "sender_business_bot_user_id": 0,
                "sender_boost_count": 0, "author_signature": "", "media_album_id": "0",
                "effect_id": "0", "restriction_reason": "", "content": content,
                "reply_markup": None}

    @staticmethod
    def _forward_info(origin_id: int, date: Optional[int] = None) -> dict:
        origin = {"@type": "messageOriginUser", "sender_user_id": origin_id} if origin_id > 0 \
            else {"@type": "messageOriginChat", "sender_chat_id": origin_id,
                  "author_signature": ""}
        return {"@type": "messageForwardInfo", "origin": origin,
                "date": int(time.time()) if date is None else date, "source": None,
                "public_service_answer_type": ""}

    def _file(self, size: int) -> dict:
        file_id = next(self._file_ids)
        return {"@type": "file", "id": file_id, "size": size, "expected_size": size,
                "local": {"@type": "localFile", "path": "", "can_be_downloaded": True,
                          "can_be_deleted": False, "is_downloading_active": False,
                          "is_downloading_completed": False, "download_offset": 0,
                          "downloaded_prefix_size": 0, "downloaded_size": 0},
                "remote": {"@type": "remoteFile", "id": f"FAKEREMOTE{file_id:08d}",
                           "unique_id": f"FAKEUNIQUE{file_id:08d}",
                           "is_uploading_active": False, "is_uploading_completed": True,
                           "uploaded_size": size}}

    def _photo_content(self, caption: str) -> dict:
        sizes = [{"@type": "photoSize", "type": t, "photo": self._file(size), "width": w,
                  "height": h, "progressive_sizes": []}
                 for t, size, w, h in (("s", 1_500, 90, 68), ("x", 120_000, 1280, 960))]
        return {"@type": "messagePhoto",
                "photo": {"@type": "photo", "has_stickers": False, "minithumbnail": None,
                          "sizes": sizes},
                "caption": formatted(caption), "show_caption_above_media": False,
                "has_spoiler": False, "is_secret": False}

    def _document_content(self, file_name: str, caption: str) -> dict:
        return {"@type": "messageDocument",
                "document": {"@type": "document", "file_name": file_name,
                             "mime_type": "application/octet-stream", "minithumbnail": None,
                             "thumbnail": None, "document": self._file(48_000)},
                "caption": formatted(caption)}

    @staticmethod
    def _user(user_id: int, first_name: str, username: str, bot: bool) -> dict:
        kind = {"@type": "userTypeBot", "can_be_edited": False, "can_join_groups": True,
                "can_read_all_group_messages": False, "has_main_web_app": False,
                "is_inline": False, "inline_query_placeholder": "",
                "need_location": False, "can_connect_to_business": False,
                "can_be_added_to_attachment_menu": False, "active_user_count": 0} if bot \
            else {"@type": "userTypeRegular"}
        return {"@type": "user", "id": user_id, "first_name": first_name, "last_name": "",
                "usernames": {"@type": "usernames",
                              "active_usernames": [username] if username else [],
                              "disabled_usernames": [], "editable_username": username}
                if username else None,
                "phone_number": "", "status": {"@type": "userStatusEmpty"},
                "profile_photo": None, "accent_color_id": 0, "is_contact": False,
                "is_mutual_contact": False, "is_close_friend": False, "verification_status": None,
                "is_premium": False, "is_support": False, "restriction_info": None,
                "has_active_stories": False, "has_unread_active_stories": False,
                "restricts_new_chats": False, "paid_message_star_count": 0,
                "have_access": True, "type": kind, "language_code": "",
                "added_to_attachment_menu": False}


def _sender_of(message: dict) -> int:
    sender = message.get("sender_id") or {}
    return int(sender.get("user_id") or sender.get("chat_id") or 0)

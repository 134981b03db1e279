"""TdlibBackend: one TDLib client (through `TdlibSession`) per account.

Why no asyncio loop: TDLib runs its own threads; `TdlibSession` answers its authorization state
machine and reports everything from TDLib's receive thread through `on_event`. Here that
callback only pushes the event into the backend's sink, so the actor handles events in its own
context, in batches, and never blocks on TDLib (every request returns an id at once; its answer
is an event). Requests are not serialized: many are outstanding in TDLib at once.

Why no session blob: TDLib keeps its authorization in the binlog of its database directory
(`data_dir/tdlib/<name>`), so a restarted backend logs in again without a code by itself.
Message, chat-info and file databases are off by default (memory), and the client is recycled
every `recycle_every_s` (default 6 h) because TDLib's memory only shrinks when an instance is
closed (tdlib/td #1704, #2573, #3671); recycling runs in a short helper thread so the actor never
waits on it.

Start.args beyond the common ones: `recycle_every_s`, `tdjson_factory` (dotted path of a
callable(args) -> TdJsonLike; tests inject FakeTdJson with it; default: the real libtdjson),
`use_message_database`, `use_chat_info_database`, `use_file_database`, `tdlib_verbosity`.
TDLib cannot be pointed at a local server (no custom DC address or RSA key): a `server` arg
without a `tdjson_factory` is refused.
"""
from __future__ import annotations

import importlib
import os
import threading
import time

from actors.backends.base import PEER_ERRORS, BackendActor, LoginFailed, describe
from actors.backends.tdlib_session import (AUTH_CLOSED, AUTH_READY, AUTH_WAIT_CODE,
                                           TdlibSession)
from messages.backend import ActionResult
from messages.lifecycle import ProbeReply
from messages.telegram import DeleteMessages, EditText, ForwardMessages, SendMedia, SendText

AUTH_CLOSING = ("authorizationStateClosing", "authorizationStateLoggingOut", AUTH_CLOSED)
CONNECTED = "connectionStateReady"
RECYCLE_TIMEOUT_S = 30.0


def load_factory(path: str):
    module, _, attr = path.rpartition(".")
    if not module:
        raise ValueError(f"tdjson_factory must be a dotted path, got {path!r}")
    return getattr(importlib.import_module(module), attr)


def message_ids(answer: dict) -> tuple:
    if answer.get("@type") == "message":
        return (int(answer["id"]),)
    if answer.get("@type") == "messages":
        return tuple(int(m["id"]) for m in answer.get("messages") or () if m)
    return ()


def classify(error: dict) -> tuple:
    """(error_kind, flood_wait_s, text) of a TdlibSession 'error' payload."""
    code, text = int(error.get("code") or 0), str(error.get("message") or "")
    if error.get("flood_wait") is not None:
        seconds = max(1, int(error["flood_wait"]))
        return "flood_wait", seconds, f"{code} {text}"
    detail = f"{code} {text}"
    if "chat not found" in text.lower() or any(p in text for p in PEER_ERRORS):
        return "peer_invalid", 0, detail
    if code >= 500 or code in (0, 401):
        return "network", 0, detail
    return "rpc_fatal", 0, detail


class TdlibBackend(BackendActor):
    library = "tdlib"
    uses_session_blob = False

    def engine_start(self, body):
        cfg = self.cfg
        factory = cfg.get("tdjson_factory")
        if cfg.get("server") and not factory:
            raise ValueError(f"backend {self.name}: TDLib cannot connect to a custom server "
                             f"(no custom DC address or RSA key); use telethon or pyrogram")
        if not cfg.get("data_dir"):
            raise ValueError(f"backend {self.name}: TDLib needs 'data_dir' for its database")
        if factory:
            tdjson = load_factory(factory)(dict(cfg))
        else:
            from actors.backends.tdjson import TdJson
            tdjson = TdJson(log_verbosity=int(cfg.get("tdlib_verbosity", 1)))
        account = {"name": self.name}
        if cfg["account_kind"] == "bot":
            account["bot_token"] = cfg["token"]
        else:
            account["phone"] = cfg["phone"]
        self.td_requests: dict[str, tuple] = {}
        self.td_signin = None          # (request_id, sender) of the code being checked
        self.td_in_flight = 0
        self.td_max_in_flight = 0
        self.td_was_connected = False
        self.recycling = False
        self.recycles = 0
        self.recycle_thread: threading.Thread | None = None
        self.td = TdlibSession(
            tdjson, account, os.path.join(cfg["data_dir"], "tdlib", self.name),
            self._on_td_event, api_id=cfg["api_id"], api_hash=cfg["api_hash"],
            use_message_database=bool(cfg.get("use_message_database", False)),
            use_chat_info_database=bool(cfg.get("use_chat_info_database", False)),
            use_file_database=bool(cfg.get("use_file_database", False)), autostart=False)
        self.td.start()
        recycle_every = float(cfg.get("recycle_every_s", 6 * 3600))
        if recycle_every > 0:
            self.every("recycle", recycle_every)

    def _on_td_event(self, kind, payload):
        """TDLib's receive thread: hand the event to the actor, nothing else."""
        self.sink.push(("td", kind, payload))

    # ---- events (actor) ---------------------------------------------------------------------
    def _ev_td(self, kind, payload):
        if kind == "auth_state":
            self._td_auth(payload)
        elif kind == "connection":
            now = payload == CONNECTED
            if now and self.td_was_connected and not self.connected:
                self._ev_reconnected()
            self.td_was_connected = self.td_was_connected or now
            self._set_connected(now)
        elif kind == "message":
            if not payload.outgoing:
                self._ev_update(payload)
        elif kind == "result":
            request_id, answer = payload
            self._td_answer(request_id, answer, None)
        elif kind == "error":
            request_id = payload.get("request_id")
            if request_id in self.td_requests:
                self._td_answer(request_id, None, payload)
            else:
                self._td_login_error(payload)

    def _self_id(self) -> int:
        token = self.cfg.get("token") or ""
        head = token.split(":", 1)[0]
        return int(head) if head.isdigit() else 0

    def _td_auth(self, state):
        if state == AUTH_READY:
            if self.td_signin is not None:
                request_id, sender = self.td_signin
                self.td_signin = None
                self._ev_signed_in(request_id, sender, {"self_id": self._self_id()})
            else:
                self._ev_opened({"state": "ready", "self_id": self._self_id(),
                                 "connected": self.connected})
        elif state == AUTH_WAIT_CODE and self.login_state != "awaiting_code":
            self._ev_opened({"state": "awaiting_code", "connected": self.connected})
        elif state in AUTH_CLOSING:
            if self.recycling:
                self.login_state = "connecting"
                self.authorized = False
                self._publish_state()
            elif state == AUTH_CLOSED:
                raise RuntimeError("TDLib client closed unexpectedly (logged out elsewhere?)")

    def _td_login_error(self, payload):
        request, text = payload.get("request", ""), str(payload.get("message", ""))
        if request == "checkAuthenticationBotToken":
            raise LoginFailed(f"bot token revoked/invalid: {text}")
        if request == "setAuthenticationPhoneNumber":
            raise LoginFailed(f"phone number rejected: {text}")
        if request in ("checkAuthenticationCode", "checkAuthenticationPassword") or \
                "password required" in text:
            if self.td_signin is not None:
                request_id, sender = self.td_signin
                self.td_signin = None
                self._ev_sign_in_failed(request_id, sender,
                                        LoginFailed(f"sign-in refused: {text}"))
            else:
                self.login_error = text
            return
        if request in ("login", "setTdlibParameters"):
            raise LoginFailed(f"TDLib login failed: {text}")
        self.log.warning("%s: TDLib error for %s: %s", self.path, request or "?", text)

    def _td_answer(self, request_id, answer, error):
        entry = self.td_requests.pop(request_id, None)
        if entry is None:
            return
        what = entry[0]
        if what == "action":
            _, seq, action_id = entry
            self.td_in_flight -= 1
            if error is None:
                result = ActionResult(action_id, True, message_ids=message_ids(answer),
                                      sent_at=time.time())
            else:
                kind, flood_s, text = classify(error)
                result = ActionResult(action_id, False, kind, text, float(flood_s))
            self._ev_result(seq, result)
        elif what == "probe":
            self.send(entry[2], ProbeReply(self.child_id, entry[1], True))
        elif what == "health":
            self._ev_health(error is None, "" if error is None else classify(error)[2],
                            self.connected)
        elif what == "reconnect":
            self._ev_reconnect_done(error is None, "" if error is None else classify(error)[2])

    def _ev_td_recycled(self, ok, detail):
        self.recycling = False
        if not ok:
            raise RuntimeError(f"TDLib recycle failed: {detail}")
        self.recycles += 1
        self.log.info("%s: TDLib client recycled (%d)", self.path, self.recycles)

    # ---- engine hooks -----------------------------------------------------------------------
    def _td_call(self, action) -> str:
        td = self.td
        if isinstance(action, SendText):
            return td.send_text(action.chat_id, action.text, action.reply_to)
        if isinstance(action, ForwardMessages):
            return td.forward(action.from_chat_id, action.message_ids, action.to_chat_id)
        if isinstance(action, EditText):
            return td.edit_text(action.chat_id, action.message_id, action.text)
        if isinstance(action, DeleteMessages):
            return td.delete(action.chat_id, action.message_ids)
        if isinstance(action, SendMedia):
            media = action.media
            if media is None or not media.file_id:
                raise ValueError("SendMedia needs a MediaRef with a file_id")
            field, kind = ("photo", "inputMessagePhoto") if media.kind == "photo" else \
                ("document", "inputMessageDocument")
            request = {"@type": "sendMessage", "chat_id": int(action.chat_id),
                       "input_message_content": {
                           "@type": kind, field: {"@type": "inputFileRemote",
                                                  "id": media.file_id},
                           "caption": {"@type": "formattedText", "text": action.caption}}}
            if action.reply_to:
                request["reply_to"] = {"@type": "inputMessageReplyToMessage",
                                       "message_id": int(action.reply_to)}
            # TdlibSession has no public send_media yet; its generic request path is used.
            return td._request(request, chat_id=int(action.chat_id))
        raise ValueError(f"{type(action).__name__} is not supported")

    def engine_run(self, jobs):
        for seq, action_id, action in jobs:
            try:
                request_id = self._td_call(action)
            except RuntimeError as exc:           # the client is closed (recycling, stopping)
                self._ev_result(seq, ActionResult(action_id, False, "network", describe(exc)))
                continue
            except (ValueError, TypeError) as exc:
                self._ev_result(seq, ActionResult(action_id, False, "rpc_fatal", describe(exc)))
                continue
            self.td_requests[request_id] = ("action", seq, action_id)
            self.td_in_flight += 1
            self.td_max_in_flight = max(self.td_max_in_flight, self.td_in_flight)

    def engine_sign_in(self, request_id, sender, code, password):
        if password:
            self.td.account["password"] = password
        self.td_signin = (request_id, sender)
        self.td.provide_code(code)

    def _probe_as(self, entry: tuple) -> bool:
        try:
            self.td_requests[self.td.probe()] = entry
            return True
        except RuntimeError as exc:
            self.log.warning("%s: TDLib probe not sent: %s", self.path, exc)
            return False

    def engine_health(self):
        if not self._probe_as(("health",)):
            self._ev_health(False, "TDLib client closed", False)

    def engine_reconnect(self):
        """TDLib reconnects by itself; an answered request closes the circuit again."""
        if not self._probe_as(("reconnect",)):
            self._ev_reconnect_done(False, "TDLib client closed")

    def engine_export(self, purpose):
        self.sink.push(("session", purpose, None))

    def engine_probe(self, seq, sender):
        self._probe_as(("probe", seq, sender))

    def engine_timer(self, name):
        if name != "recycle" or self.recycling or self.login_state != "ready":
            return
        self.recycling = True
        td, sink = self.td, self.sink

        def recycle():
            try:
                ok, detail = td.recycle(timeout=RECYCLE_TIMEOUT_S), "timed out"
            except RuntimeError as exc:
                ok, detail = False, describe(exc)
            sink.push(("td_recycled", ok, detail))
        self.recycle_thread = threading.Thread(target=recycle, name=f"recycle-{self.name}",
                                               daemon=True)
        self.recycle_thread.start()

    def engine_stop(self, timeout):
        td = getattr(self, "td", None)
        if td is None:
            return None
        thread = self.recycle_thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        if not td.close(timeout=timeout):
            self.log.warning("%s: TDLib did not close within %.1fs", self.path, timeout)
            self.td_unclosed = True
        return None

    def engine_left_running(self):
        return "a TDLib client that did not close" if getattr(self, "td_unclosed", False) else ""

    def engine_stats(self):
        return {"clients_created": 1 if getattr(self, "td", None) else 0,
                "max_in_flight": getattr(self, "td_max_in_flight", 0),
                "recycles": getattr(self, "recycles", 0)}

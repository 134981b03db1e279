"""TdlibSession against FakeTdJson (a FAKE of TDLib's JSON interface: no server TDLib could reach
exists here). Checks the TDLib requests the session makes, the events it reports, and that its
receive thread starts, is shared, and stops."""
from __future__ import annotations

import threading
import time

import pytest

from actors.backends.tdjson import TdJsonLike
from actors.backends.tdlib_session import TdlibSession, parse_flood_wait
from messages.telegram import IncomingMessage, MediaRef
from tests.fakes.fake_tdjson import FakeTdJson

BOT = {"name": "alpha", "bot_token": "123456:ABC-def_ghi", "api_id": 1, "api_hash": "h"}
USER = {"name": "uma", "phone": "+15550001111", "api_id": 1, "api_hash": "h"}
READY = "authorizationStateReady"


class Recorder:
    """on_event sink: keeps every event and the thread it came from; waits for one."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def __call__(self, kind: str, payload: object) -> None:
        with self._cond:
            self.events.append((kind, payload))
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def wait(self, predicate, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for kind, payload in self.events:
                    if predicate(kind, payload):
                        return payload
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event in {timeout}s; got {self.events}")
                self._cond.wait(left)

    def auth(self, state: str, timeout: float = 5.0):
        return self.wait(lambda k, p: k == "auth_state" and p == state, timeout)

    def result(self, request_id: str):
        return self.wait(lambda k, p: k == "result" and p[0] == request_id)[1]

    def error(self, request_id: str):
        return self.wait(lambda k, p: k == "error" and p.get("request_id") == request_id)

    def message(self, predicate=lambda m: True):
        return self.wait(lambda k, p: k == "message" and predicate(p))

    def of(self, kind: str) -> list:
        with self._cond:
            return [p for k, p in self.events if k == kind]


@pytest.fixture
def fake():
    return FakeTdJson()


@pytest.fixture
def make(fake, tmp_path):
    """Build sessions on the fake; every one is closed at the end, its thread checked."""
    sessions = []

    def build(account=BOT, data_dir=None, **kwargs):
        recorder = Recorder()
        session = TdlibSession(fake, account, str(data_dir or tmp_path / account["name"]),
                               recorder, **kwargs)
        sessions.append(session)
        return session, recorder

    yield build
    for session in sessions:
        session.close(timeout=2)
    for session in sessions:
        thread = session.receive_thread
        assert thread is None or not thread.is_alive()


def ready_bot(make, fake, **kwargs):
    session, events = make(BOT, **kwargs)
    events.auth(READY)
    fake.add_chat(session.client_id, 1001, "private")
    fake.add_chat(session.client_id, -500, "group")
    fake.add_chat(session.client_id, -1001234, "supergroup")
    fake.add_chat(session.client_id, -1009999, "channel")
    return session, events


def test_fake_is_a_tdjson_like():
    assert isinstance(FakeTdJson(), TdJsonLike)


def test_api_credentials_are_required(fake, tmp_path):
    with pytest.raises(ValueError):
        TdlibSession(fake, {"name": "x", "bot_token": "1:a"}, str(tmp_path), Recorder())


def test_bot_login_reaches_ready(make, fake, tmp_path):
    session, events = make(BOT)
    events.auth(READY)
    states = events.of("auth_state")
    assert states == ["authorizationStateWaitTdlibParameters",
                      "authorizationStateWaitPhoneNumber", READY]
    (params,) = fake.requests_of_type("setTdlibParameters")
    assert params["database_directory"] == str(tmp_path / "alpha")
    assert params["use_message_database"] is False
    assert params["use_chat_info_database"] is False
    assert params["use_file_database"] is False
    assert params["use_test_dc"] is False
    assert (params["api_id"], params["api_hash"]) == (1, "h")
    (login,) = fake.requests_of_type("checkAuthenticationBotToken")
    assert login["token"] == BOT["bot_token"]
    assert fake.requests_of_type("setAuthenticationPhoneNumber") == []
    events.wait(lambda k, p: k == "connection" and p == "connectionStateReady")
    assert events.of("connection") == ["connectionStateConnecting", "connectionStateReady"]
    assert session.connection_state == "connectionStateReady" and session.is_ready
    assert events.threads == {"tdjson-receive"}
    assert session.receive_thread.name == "tdjson-receive"


def test_databases_can_be_switched_on(make, fake):
    _, events = make(BOT, use_message_database=True, use_file_database=True)
    events.auth(READY)
    (params,) = fake.requests_of_type("setTdlibParameters")
    assert params["use_message_database"] is True and params["use_file_database"] is True
    assert params["use_chat_info_database"] is False


def test_bad_bot_token_is_reported(make, fake):
    _, events = make({**BOT, "bot_token": "not a token"})
    err = events.wait(lambda k, p: k == "error")
    assert err["request"] == "checkAuthenticationBotToken"
    assert (err["code"], err["message"]) == (400, "ACCESS_TOKEN_INVALID")
    assert "flood_wait" not in err


def test_user_login_asks_for_code_and_reaches_ready(make, fake):
    session, events = make(USER)
    events.auth("authorizationStateWaitCode")
    (phone,) = fake.requests_of_type("setAuthenticationPhoneNumber")
    assert phone["phone_number"] == USER["phone"]
    assert fake.requests_of_type("checkAuthenticationCode") == []
    assert not session.is_ready

    session.provide_code("99999")                 # wrong: TDLib stays in WaitCode
    err = events.wait(lambda k, p: k == "error")
    assert (err["request"], err["message"]) == ("checkAuthenticationCode", "PHONE_CODE_INVALID")
    session.provide_code(fake.login_code)
    events.auth(READY)
    assert [r["code"] for r in fake.requests_of_type("checkAuthenticationCode")] == \
        ["99999", fake.login_code]


def test_code_given_before_tdlib_asks_is_used(make, fake):
    session, events = make(USER, autostart=False)
    session.provide_code(fake.login_code)
    session.start()
    events.auth(READY)
    assert len(fake.requests_of_type("checkAuthenticationCode")) == 1


def test_incoming_text_message_becomes_incoming_message(make, fake):
    session, events = ready_bot(make, fake)
    fake.add_user(session.client_id, 1001, username="alice")
    before = time.time()
    td = fake.inject_message(session.client_id, 1001, text="hello", sender_id=1001,
                             reply_to=7 << 20, date=1_700_000_000)
    message = events.message()
    assert isinstance(message, IncomingMessage)
    assert message.bot == "alpha"
    assert message.update_id == f"1001:{td['id']}"
    assert (message.chat_id, message.chat_kind, message.message_id) == (1001, "private", td["id"])
    assert (message.sender_id, message.sender_username) == (1001, "alice")
    assert (message.text, message.date, message.reply_to) == ("hello", 1_700_000_000.0, 7 << 20)
    assert before <= message.received_at <= time.time()
    assert message.media is None and message.grouped_id is None and message.fwd_from is None
    assert message.outgoing is False


@pytest.mark.parametrize("chat_id, kind, sender", [
    (-500, "group", 42), (-1001234, "group", 42), (-1009999, "channel", -1009999)])
def test_chat_kind_comes_from_the_chat_type(make, fake, chat_id, kind, sender):
    session, events = ready_bot(make, fake)
    fake.inject_message(session.client_id, chat_id, text="x", sender_id=42)
    message = events.message()
    assert (message.chat_id, message.chat_kind, message.sender_id) == (chat_id, kind, sender)


def test_unannounced_chat_is_looked_up_with_getchat(make, fake):
    session, events = ready_bot(make, fake)
    fake.add_chat(session.client_id, -1005555, "channel", announce=False)
    fake.inject_message(session.client_id, -1005555, text="post")
    message = events.message()
    assert message.chat_kind == "channel"
    assert [r["chat_id"] for r in fake.requests_of_type("getChat")] == [-1005555]


def test_photo_document_album_and_forward_fields(make, fake):
    session, events = ready_bot(make, fake)
    photo = fake.inject_message(session.client_id, -500, text="cap", sender_id=5, photo=True,
                                media_album_id=777)
    fake.inject_message(session.client_id, -500, document="report.pdf", sender_id=5,
                        forward_from=99)
    first = events.message(lambda m: m.media and m.media.kind == "photo")
    largest = photo["content"]["photo"]["sizes"][-1]["photo"]
    assert first.media == MediaRef(kind="photo", file_id=largest["remote"]["id"],
                                   size=largest["size"])
    assert (first.text, first.grouped_id) == ("cap", 777)
    second = events.message(lambda m: m.media and m.media.kind == "document")
    assert second.media.file_name == "report.pdf" and second.media.file_id
    assert second.fwd_from == 99 and second.text == ""


def test_send_text_request_and_confirmed_result(make, fake):
    session, events = ready_bot(make, fake)
    request_id = session.send_text(1001, "hi there", reply_to=5 << 20)
    (sent,) = fake.requests_of_type("sendMessage")
    assert sent == {"@type": "sendMessage", "chat_id": 1001, "@extra": request_id,
                    "reply_to": {"@type": "inputMessageReplyToMessage", "message_id": 5 << 20},
                    "input_message_content": {
                        "@type": "inputMessageText",
                        "text": {"@type": "formattedText", "text": "hi there"}}}
    result = events.result(request_id)
    assert result["@type"] == "message" and result["sending_state"] is None
    assert result["content"]["text"]["text"] == "hi there"
    assert result["id"] % (1 << 20) == 0              # the final server id, not the temporary one
    assert events.of("message") == []                 # own pending message is not an update


def test_send_text_without_reply_has_no_reply_field(make, fake):
    session, events = ready_bot(make, fake)
    events.result(session.send_text(-500, "plain"))
    assert "reply_to" not in fake.requests_of_type("sendMessage")[0]


def test_forward_request_and_result(make, fake):
    session, events = ready_bot(make, fake)
    a = fake.inject_message(session.client_id, -500, text="one", sender_id=5,
                            media_album_id=9)
    b = fake.inject_message(session.client_id, -500, text="two", sender_id=5,
                            media_album_id=9)
    request_id = session.forward(-500, (a["id"], b["id"], 123), 1001)
    (sent,) = fake.requests_of_type("forwardMessages")
    assert (sent["chat_id"], sent["from_chat_id"], sent["message_ids"]) == \
        (1001, -500, [a["id"], b["id"], 123])
    assert sent["@extra"] == request_id and sent["send_copy"] is False
    result = events.result(request_id)
    assert result["@type"] == "messages" and result["total_count"] == 3
    first, second, missing = result["messages"]
    assert missing is None                            # TDLib: null when it cannot forward
    assert [first["chat_id"], second["chat_id"]] == [1001, 1001]
    assert first["sending_state"] is None and second["sending_state"] is None
    assert first["forward_info"]["origin"]["sender_user_id"] == 5
    assert first["content"]["text"]["text"] == "one"


def test_edit_text_request_and_result(make, fake):
    session, events = ready_bot(make, fake)
    sent = events.result(session.send_text(1001, "draft"))
    request_id = session.edit_text(1001, sent["id"], "final")
    (edit,) = fake.requests_of_type("editMessageText")
    assert (edit["chat_id"], edit["message_id"]) == (1001, sent["id"])
    assert edit["input_message_content"]["text"]["text"] == "final"
    result = events.result(request_id)
    assert result["content"]["text"]["text"] == "final" and result["edit_date"] > 0

    incoming = fake.inject_message(session.client_id, 1001, text="theirs", sender_id=1001)
    err = events.error(session.edit_text(1001, incoming["id"], "nope"))
    assert (err["code"], err["message"], err["chat_id"]) == (400, "Message can't be edited", 1001)


def test_delete_request_and_result(make, fake):
    session, events = ready_bot(make, fake)
    sent = events.result(session.send_text(-500, "bye"))
    request_id = session.delete(-500, [sent["id"]])
    (delete,) = fake.requests_of_type("deleteMessages")
    assert delete == {"@type": "deleteMessages", "chat_id": -500, "message_ids": [sent["id"]],
                      "revoke": True, "@extra": request_id}
    assert events.result(request_id) == {"@type": "ok", "@extra": request_id,
                                         "@client_id": session.client_id}
    assert fake.client_messages(session.client_id, -500) == []


def test_probe_is_answered(make, fake):
    session, events = make(BOT)
    result = events.result(session.probe())
    assert result["@type"] == "optionValueString" and result["value"]


def test_unknown_chat_error_has_no_flood_wait(make, fake):
    session, events = ready_bot(make, fake)
    err = events.error(session.send_text(424242, "x"))
    assert (err["code"], err["message"], err["request"]) == (400, "Chat not found", "sendMessage")
    assert "flood_wait" not in err


@pytest.mark.parametrize("via", ["update", "response"])
def test_flood_wait_is_reported_not_slept(make, fake, monkeypatch, via):
    session, events = ready_bot(make, fake)

    def no_sleep(seconds):
        raise AssertionError(f"slept {seconds}s on a flood wait")

    monkeypatch.setattr(time, "sleep", no_sleep)
    fake.fail_next_send(retry_after=7, via=via)
    started = time.monotonic()
    request_id = session.send_text(-500, "too fast")
    err = events.error(request_id)
    assert time.monotonic() - started < 1.0
    assert err["flood_wait"] == 7 and err["code"] == 429
    assert err["message"] == "Too Many Requests: retry after 7"
    assert (err["request"], err["chat_id"]) == ("sendMessage", -500)
    assert not any(k == "result" and p[0] == request_id for k, p in events.events)
    events.result(session.send_text(-500, "later"))   # only the next send failed


def test_flood_wait_on_forward(make, fake):
    session, events = ready_bot(make, fake)
    a = fake.inject_message(session.client_id, -500, text="a", sender_id=5)
    b = fake.inject_message(session.client_id, -500, text="b", sender_id=5)
    fake.fail_next_send(retry_after=3)
    err = events.error(session.forward(-500, [a["id"], b["id"]], 1001))
    assert (err["flood_wait"], err["request"], err["chat_id"]) == (3, "forwardMessages", 1001)


def test_parse_flood_wait():
    assert parse_flood_wait(429, "Too Many Requests: retry after 42") == 42
    assert parse_flood_wait(420, "FLOOD_WAIT_13") == 13
    assert parse_flood_wait(429, "Too Many Requests") == 0
    assert parse_flood_wait(400, "Chat not found") is None


def test_close_stops_the_thread(make, fake):
    session, events = make(BOT)
    events.auth(READY)
    thread = session.receive_thread
    assert thread.is_alive()
    assert session.close(timeout=3) is True
    assert events.of("auth_state")[-2:] == ["authorizationStateClosing",
                                            "authorizationStateClosed"]
    assert not thread.is_alive()
    assert fake.requests_of_type("close")
    with pytest.raises(RuntimeError):
        session.send_text(1001, "after close")
    assert session.close() is True                    # idempotent


def test_close_from_inside_on_event_does_not_deadlock(fake, tmp_path):
    holder = {}
    recorder = Recorder()

    def on_event(kind, payload):
        recorder(kind, payload)
        if kind == "auth_state" and payload == READY:
            holder["close_returned"] = holder["session"].close()

    session = TdlibSession(fake, BOT, str(tmp_path), on_event, autostart=False)
    holder["session"] = session
    session.start()
    recorder.auth("authorizationStateClosed")
    assert holder["close_returned"] is False          # could not wait on its own thread
    session.receive_thread.join(timeout=2)
    assert not session.receive_thread.is_alive()


def test_recycle_closes_and_reopens_on_the_same_data_dir(make, fake, tmp_path):
    session, events = ready_bot(make, fake)
    old_id, thread = session.client_id, session.receive_thread
    assert session.recycle(timeout=3) is True
    assert session.client_id != old_id and session.recycles == 1
    assert [cid for cid, r in fake.requests if r["@type"] == "close"] == [old_id]
    events.wait(lambda k, p: k == "auth_state" and p == READY
                and events.of("auth_state").count(READY) == 2)
    dirs = [r["database_directory"] for r in fake.requests_of_type("setTdlibParameters")]
    assert dirs == [str(tmp_path / "alpha")] * 2
    assert len(fake.requests_of_type("checkAuthenticationBotToken")) == 1   # login kept
    assert session.receive_thread is thread and thread.is_alive()
    fake.add_chat(session.client_id, 1001, "private")
    result = events.result(session.send_text(1001, "after recycle"))
    assert result["chat_id"] == 1001


def test_user_recycle_needs_no_new_code(make, fake):
    session, events = make(USER)
    events.auth("authorizationStateWaitCode")
    session.provide_code(fake.login_code)
    events.auth(READY)
    assert session.recycle(timeout=3)
    events.wait(lambda k, p: events.of("auth_state").count(READY) == 2)
    assert len(fake.requests_of_type("checkAuthenticationCode")) == 1


def test_two_sessions_share_one_receive_thread(make, fake, tmp_path):
    first, first_events = make(BOT)
    second, second_events = make({**BOT, "name": "beta", "bot_token": "777:xyz"})
    first_events.auth(READY)
    second_events.auth(READY)
    assert first.receive_thread is second.receive_thread
    fake.add_chat(first.client_id, 1001)
    fake.add_chat(second.client_id, 2002)
    fake.inject_message(first.client_id, 1001, text="for alpha")
    fake.inject_message(second.client_id, 2002, text="for beta")
    assert first_events.message().text == "for alpha"
    assert second_events.message().text == "for beta"
    assert [m.bot for m in first_events.of("message")] == ["alpha"]
    assert [m.bot for m in second_events.of("message")] == ["beta"]
    thread = first.receive_thread
    assert first.close(timeout=3) and thread.is_alive()   # beta still uses it
    assert second.close(timeout=3) and not thread.is_alive()
    assert fake.concurrent_receives == 0 and fake.receive_threads == {"tdjson-receive"}


def test_a_raising_callback_does_not_stop_the_loop(fake, tmp_path):
    recorder = Recorder()
    calls = []

    def on_event(kind, payload):
        calls.append(kind)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        recorder(kind, payload)

    session = TdlibSession(fake, BOT, str(tmp_path), on_event)
    try:
        recorder.auth(READY)
    finally:
        assert session.close(timeout=3)


def test_close_fails_sends_still_pending(make, fake):
    session, events = ready_bot(make, fake)
    fake.hold_sends = True                           # accepted, never confirmed (offline)
    request_id = session.send_text(1001, "stuck")
    probe_id = session.probe()                       # answered after the send's answer
    events.result(probe_id)
    assert not [p for k, p in events.events if k in ("result", "error")
                and (p[0] if k == "result" else p["request_id"]) == request_id]
    assert session.close(timeout=3)
    err = events.error(request_id)
    assert (err["code"], err["message"], err["chat_id"]) == (500, "TDLib client closed", 1001)


def test_recycle_fails_pending_and_new_requests_use_the_new_client(make, fake):
    session, events = ready_bot(make, fake)
    fake.hold_sends = True
    stuck = session.send_text(1001, "stuck")
    events.result(session.probe())
    assert session.recycle(timeout=3)
    assert events.error(stuck)["message"] == "TDLib client closed"
    fake.hold_sends = False
    events.wait(lambda k, p: events.of("auth_state").count(READY) == 2)
    fake.add_chat(session.client_id, 1001)
    request_id = session.send_text(1001, "fresh")
    assert events.result(request_id)["chat_id"] == 1001
    assert [cid for cid, r in fake.requests if r.get("@extra") == request_id] == \
        [session.client_id]


def test_close_gives_up_on_a_hung_client(make, fake):
    session, events = ready_bot(make, fake)
    fake.hold_sends = fake.ignore_close = True
    request_id = session.send_text(1001, "stuck")
    events.result(session.probe())
    thread = session.receive_thread
    started = time.monotonic()
    assert session.close(timeout=0.3) is False
    assert time.monotonic() - started < 2
    assert not thread.is_alive()
    assert events.error(request_id)["message"] == "client did not close in time"
    with pytest.raises(RuntimeError):
        session.probe()

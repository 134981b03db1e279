"""TdlibBackend against FakeTdJson (a FAKE of TDLib's JSON interface: TDLib cannot be pointed at
the local Telegram, and this machine has no route to Telegram). The in-process tests drive the
fake directly (FAKES registry); the scripted test runs on both bases, the fake living in the
backend's own process on the processes base."""
from __future__ import annotations

import pytest

from messages.telegram import SendText
from tests.support.backend_probe import FAKES, Collect, Collected

from .conftest import API_HASH

TOKEN = "123456:ABC-def_ghi"


def td_args(tmp_path, name, **extra):
    args = {"name": name, "library": "tdlib", "account_kind": "bot", "token": TOKEN,
            "api_id": 1, "api_hash": API_HASH, "data_dir": str(tmp_path),
            "tdjson_factory": "tests.support.backend_probe.fake_tdjson_factory",
            "health_interval_s": 0.5, "recycle_every_s": 0}
    args.update(extra)
    return args


def client_id(fake) -> int:
    return [cid for cid, r in fake.requests if r["@type"] == "setTdlibParameters"][-1]


def floods(fleet, stand_in):
    return fleet.ask(stand_in, Collect(), 10, Collected).floods


def test_bot_login_receive_send_flood_and_unknown_chat(inprocess_fleet, tmp_path):
    fleet = inprocess_fleet
    limiter = fleet.stand_in()
    group = fleet.group(td_args(tmp_path, "tdbot"), env={"ratelimit": limiter})
    fake = FAKES["tdbot"]
    cid = client_id(fake)
    assert fake.requests_of_type("checkAuthenticationBotToken")[0]["token"] == TOKEN
    params = fake.requests_of_type("setTdlibParameters")[0]
    assert not (params["use_message_database"] or params["use_chat_info_database"]
                or params["use_file_database"])
    state = group.wait_collect(lambda c: c.states and c.states[-1].login_state == "ready",
                               what="ready").states[-1]
    assert state.connected and state.self_id == 123456 and state.library == "tdlib"

    fake.add_chat(cid, 1001, "private")
    fake.add_chat(cid, -500, "group")
    sent = fake.inject_message(cid, 1001, text="hi td", sender_id=1001)
    fake.inject_message(cid, -500, text="in group", sender_id=77)
    got = group.wait_collect(lambda c: len(c.updates) >= 2, what="two updates").updates
    by_text = {u.text: u for u in got}
    assert by_text["hi td"].chat_kind == "private" and by_text["hi td"].message_id == sent["id"]
    assert by_text["in group"].chat_kind == "group" and by_text["in group"].sender_id == 77

    group.act(("reply", SendText(chat_id=1001, text="hello", reply_to=sent["id"],
                                 received_at=by_text["hi td"].received_at)),
              ("lost", SendText(chat_id=4242, text="nobody")))
    res = group.results(["reply", "lost"])
    assert res["reply"].ok and res["reply"].message_ids[0] % (1 << 20) == 0
    assert res["lost"].error_kind == "peer_invalid" and "Chat not found" in res["lost"].error
    (request,) = [r for r in fake.requests_of_type("sendMessage") if r["chat_id"] == 1001]
    assert request["reply_to"]["message_id"] == sent["id"]

    fake.fail_next_send(retry_after=7)
    group.act(("flooded", SendText(chat_id=-500, text="too fast")))
    res = group.results(["flooded"])["flooded"]
    assert (res.ok, res.error_kind, res.flood_wait_s) == (False, "flood_wait", 7.0)
    report = fleet.poll(lambda: floods(fleet, limiter), 10, "FloodWaitReport")[0]
    assert (report.bot, report.chat_id, report.chat_kind, report.seconds) == \
        ("tdbot", -500, "group", 7.0)
    group.act(("after", SendText(chat_id=-500, text="later")))
    assert group.results(["after"])["after"].ok
    stats = fleet.poll(lambda: (lambda s: s if s.get("health_ok") else None)(group.stats()),
                       10, "a health probe answered")
    assert stats["clients_created"] == 1
    assert fake.concurrent_receives == 0


def test_user_login_with_code(inprocess_fleet, tmp_path):
    group = inprocess_fleet.group(td_args(tmp_path, "tduser", account_kind="user",
                                          phone="+15550001111", token=None))
    assert group.login_status().state == "awaiting_code"
    wrong = group.provide_code("00000")
    assert wrong.state == "awaiting_code" and "PHONE_CODE_INVALID" in wrong.error
    assert group.provide_code("12345").state == "ready"
    fake = FAKES["tduser"]
    assert [r["code"] for r in fake.requests_of_type("checkAuthenticationCode")] == \
        ["00000", "12345"]
    fake.add_chat(client_id(fake), 2002, "private")
    group.act(("s", SendText(chat_id=2002, text="from a user account")))
    assert group.results(["s"])["s"].ok


def test_recycle_keeps_the_login(inprocess_fleet, tmp_path):
    group = inprocess_fleet.group(td_args(tmp_path, "tdrecycle", recycle_every_s=0.5))
    inprocess_fleet.poll(lambda: group.stats()["recycles"] >= 1, 20, "a recycle")
    fake = FAKES["tdrecycle"]
    group.wait_collect(lambda c: c.states[-1].login_state == "ready", what="ready again")
    assert len(fake.requests_of_type("checkAuthenticationBotToken")) == 1   # binlog kept it
    assert len(fake.requests_of_type("close")) >= 1
    assert group.status()["backend"].restarts == 0


@pytest.mark.parametrize("script_flood", [2])
def test_scripted_fake_on_both_bases(fleet, tmp_path, script_flood):
    limiter = fleet.stand_in()
    script = {"chats": [[1001, "private"]], "inject": [[1001, "hello td", 1001]],
              "flood_on_send": script_flood, "flood_retry_after": 5}
    group = fleet.group(td_args(tmp_path, "tdscript", fake=script), env={"ratelimit": limiter})
    msg = group.wait_collect(lambda c: any(u.text == "hello td" for u in c.updates),
                             what="scripted message").updates[0]
    assert (msg.chat_id, msg.chat_kind, msg.bot) == (1001, "private", "tdscript")
    group.act(("one", SendText(chat_id=1001, text="first")))
    assert group.results(["one"])["one"].ok
    group.act(("two", SendText(chat_id=1001, text="second")))
    two = group.results(["two"])["two"]
    assert (two.error_kind, two.flood_wait_s) == ("flood_wait", 5.0)
    assert fleet.poll(lambda: floods(fleet, limiter), 10, "FloodWaitReport")[0].chat_id == 1001

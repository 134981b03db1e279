"""A user talks to an account through its backend: Telethon and Pyrogram, bot and user
accounts, on both bases. The probe plays the bot: it gets the IncomingMessage, replies with a
SendText, and an action to an unknown chat fails as peer_invalid without hurting the backend.
User accounts log in with phone + code through ProvideLoginCode."""
from __future__ import annotations

import pytest

from messages.telegram import SendText
from tests.support.backend_probe import AttachNow, Collect, Collected, Sent

from .conftest import backend_args


def login_if_user(group, account):
    if account["kind"] != "user":
        return
    status = group.login_status()
    assert status.state == "awaiting_code" and status.phone == account["phone"]
    wrong = group.provide_code("11111")
    assert wrong.state == "awaiting_code" and "PHONE_CODE_INVALID" in wrong.error
    ok = group.provide_code()
    assert ok.state == "ready", ok
    assert group.login_status().state == "ready"


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
@pytest.mark.parametrize("kind", ["bot", "user"])
def test_message_in_reply_out(fleet, tg, tmp_path, library, kind):
    ctl = tg.control
    account = ctl.create_account(kind, provision_key=False)
    user = ctl.create_account("user")
    args = backend_args(tg, account, library, tmp_path)
    metrics = fleet.stand_in("metrics")
    group = fleet.group(args, env={"metrics": metrics})
    login_if_user(group, account)
    first = group.wait_collect(lambda c: c.states and c.states[-1].login_state == "ready",
                               what="BackendState ready")
    state = first.states[-1]
    assert state.authorized and state.connected and state.library == library
    assert state.self_id == account["user_id"]

    sent = ctl.send_as(user["user_id"], account["user_id"], "hello backend")
    got = group.wait_collect(lambda c: any(u.text == "hello backend" for u in c.updates),
                             what="IncomingMessage")
    msg = next(u for u in got.updates if u.text == "hello backend")
    assert (msg.chat_id, msg.chat_kind, msg.sender_id) == (user["user_id"], "private",
                                                           user["user_id"])
    assert msg.message_id == sent["id"] and msg.update_id == f"{user['user_id']}:{sent['id']}"
    assert msg.received_at > 0 and not msg.outgoing and msg.bot == args["name"]

    group.act(("reply", SendText(origin=msg.update_id, received_at=msg.received_at,
                                 chat_id=msg.chat_id, text="hello user",
                                 reply_to=msg.message_id)),
              ("nowhere", SendText(chat_id=987_654_321, text="to nobody")))
    results = group.results(["reply", "nowhere"])
    assert results["reply"].ok and results["reply"].message_ids, results["reply"]
    assert results["nowhere"].error_kind == "peer_invalid", results["nowhere"]
    answers = ctl.received(user["user_id"], since_id=sent["id"])
    assert [(a["text"], a["reply_to"], a["from_id"]) for a in answers] == \
        [("hello user", sent["id"], account["user_id"])]

    # the backend keeps working after the bad action; its own messages are not delivered
    group.act(("again", SendText(chat_id=user["user_id"], text="still here")))
    assert group.results(["again"])["again"].ok
    stats = group.stats()
    assert stats["clients_created"] == 1 and stats["login_state"] == "ready"
    assert not any(u.text in ("hello user", "still here") for u in group.collect().updates)
    assert group.status()["backend"].restarts == 0

    def e2e_count():        # the reply carried received_at: one e2e latency observation
        for report in fleet.ask(metrics, Collect(), 10, Collected).metrics:
            for family, labels, value in report.samples:
                if family == "tgfleet_e2e_latency_seconds":
                    return value[2]
        return 0
    assert fleet.poll(e2e_count, 10, "an e2e latency observation") == 1


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_updates_wait_for_the_bot_bounded(inprocess_fleet, tg, tmp_path, library):
    """Before a bot attaches, updates are kept (at most max_buffered_updates, oldest dropped
    and counted) and delivered in order when it attaches."""
    fleet, ctl = inprocess_fleet, tg.control
    bot = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")
    group = fleet.group(backend_args(tg, bot, library, tmp_path, max_buffered_updates=2),
                        probe={"attach": False})
    assert group.login_status().state == "ready"
    for text in ("one", "two", "three"):
        ctl.send_as(user["user_id"], bot["user_id"], text)
    fleet.poll(lambda: group.stats()["updates"] == 3, 20, "three updates seen")
    assert group.collect().updates == ()
    assert fleet.ask(group.where("probe"), AttachNow(), 10, Sent).count == 1
    got = group.wait_collect(lambda c: len(c.updates) == 2, what="the buffered updates")
    assert [u.text for u in got.updates] == ["two", "three"]
    assert got.states[-1].login_state == "ready"
    stats = group.stats()
    assert (stats["updates_dropped"], stats["buffered"]) == (1, 0)

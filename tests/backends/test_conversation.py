"""A user talks to an account through its backend: Telethon and Pyrogram, bot and user
accounts, on both bases. The probe plays the bot: it gets the IncomingMessage, replies with a
SendText, and an action to an unknown chat fails as peer_invalid without hurting the backend.
User accounts log in with phone + code through ProvideLoginCode."""
from __future__ import annotations

import pytest

from messages.telegram import SendText

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
    group = fleet.group(args)
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

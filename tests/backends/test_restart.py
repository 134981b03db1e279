"""Sessions survive their backend: SIGKILL mid-conversation, a corrupted stored session, a
revoked bot token.

- SIGKILL (processes base): the BotGroup restarts the backend (and the bot after it); the new
  backend resumes from the session in the StoreActor WITHOUT a new login (the local Telegram
  counts no new ImportBotAuthorization / SignIn, and the stored auth key is unchanged), and the
  messages sent while it was down arrive through GetDifference.
- Corrupted stored session: a clear "corrupted session" error, then (documented policy) a fresh
  bot-token login that overwrites the bad bytes.
- Wrong bot token: the backend crashes with a clear "token" error in its supervisor's
  last_error, and the neighbouring bot group keeps answering.
"""
from __future__ import annotations

import os
import signal

import pytest

from actors.backends.base import decode_session
from actors.backends.registry import BACKENDS
from messages.lifecycle import (TEMPORARY, ChildCommand, ChildCommandResult, ChildSpec,
                                TreeStatus, TreeStatusRequest)
from messages.telegram import SendText

from .conftest import Group, backend_args, rpc_count, tg_unlimited

tg = tg_unlimited  # this module's local Telegram: flood limits off


def stored_key(fleet, store, library, name):
    blob = fleet.session_in_store(store, f"{name}.{library}")
    assert blob is not None, "no session in the store"
    return decode_session(library, blob)["auth_key"]


def texts(collected):
    return {u.text for u in collected.updates}


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
@pytest.mark.parametrize("kind", ["bot", "user"])
def test_sigkill_resumes_from_stored_session(processes_fleet, tg, tmp_path, library, kind):
    fleet, ctl = processes_fleet, tg.control
    store = fleet.store(str(tmp_path / "store.db"))
    account = ctl.create_account(kind, provision_key=False)
    user = ctl.create_account("user")
    args = backend_args(tg, account, library, tmp_path, session_save_s=0.3)
    group = fleet.group(args, env={"store": store}, backoff={"base_s": 0.5, "max_s": 1.0})
    if kind == "user":
        assert group.provide_code().state == "ready"
    group.wait_collect(lambda c: c.states and c.states[-1].login_state == "ready",
                       what="ready")
    ctl.send_as(user["user_id"], account["user_id"], "before the kill")
    group.wait_collect(lambda c: "before the kill" in texts(c), what="live message")
    key = stored_key(fleet, store, library, args["name"])
    logins = rpc_count(tg, "ImportBotAuthorizationRequest") + rpc_count(tg, "SignInRequest")
    diffs = rpc_count(tg, "GetDifferenceRequest")
    old = group.status()["backend"]

    os.kill(old.pid, signal.SIGKILL)
    for i in range(3):
        ctl.send_as(user["user_id"], account["user_id"], f"while down {i}")

    st = group.wait_status(lambda s: s["backend"].restarts == 1 and s["backend"].state ==
                           "running" and s["probe"].state == "running", what="restart")
    assert st["backend"].pid != old.pid and st["probe"].restarts == 1    # rest_for_one
    got = group.wait_collect(lambda c: {f"while down {i}" for i in range(3)} <= texts(c),
                             what="the messages sent while down")
    assert got.states[-1].login_state == "ready"
    assert rpc_count(tg, "ImportBotAuthorizationRequest") + \
        rpc_count(tg, "SignInRequest") == logins, "the restarted backend logged in again"
    assert rpc_count(tg, "GetDifferenceRequest") > diffs
    assert stored_key(fleet, store, library, args["name"]) == key
    assert group.login_status().state == "ready"
    group.act(("after", SendText(chat_id=user["user_id"], text="back again")))
    assert group.results(["after"])["after"].ok


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_clean_restart_resumes_from_the_session_file(inprocess_fleet, tg, tmp_path, library):
    """No store in env: the session goes to a file under data_dir; a clean stop saves it and
    the next backend logs in with it, without a new token login."""
    fleet, ctl = inprocess_fleet, tg.control
    bot = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")
    args = backend_args(tg, bot, library, tmp_path)
    group = fleet.group(args)
    assert group.login_status().state == "ready"
    path = tmp_path / f"{args['name']}.{library}.session"
    assert decode_session(library, path.read_bytes())["auth_key"]
    imports = rpc_count(tg, "ImportBotAuthorizationRequest")
    # Stop the bot, then the backend, and start them again in order. (A lone
    # ChildCommand("restart", "backend") would leave the running bot attached to the old
    # address: the supervisor does not tell later siblings about a restarted one.)
    for op, child in (("stop", "probe"), ("stop", "backend"), ("start", "backend"),
                      ("start", "probe")):
        reply = fleet.ask(group.root, ChildCommand(op, child, op), 30, ChildCommandResult)
        assert reply is not None and reply.ok, reply
    group.wait_status(lambda s: s["backend"].state == "running" and
                      s["probe"].state == "running", what="running again")
    assert group.login_status().state == "ready"
    assert rpc_count(tg, "ImportBotAuthorizationRequest") == imports
    sent = ctl.send_as(user["user_id"], bot["user_id"], "after the restart")
    group.wait_collect(lambda c: "after the restart" in texts(c), what="message after restart")
    assert sent["id"]


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_corrupted_session_falls_back_to_a_fresh_bot_login(inprocess_fleet, tg, tmp_path,
                                                           library):
    fleet, ctl = inprocess_fleet, tg.control
    store = fleet.store(str(tmp_path / "store.db"))
    bot = ctl.create_account("bot", provision_key=False)
    args = backend_args(tg, bot, library, tmp_path)
    fleet.put_session(store, f"{args['name']}.{library}", b"\x00garbage, not a session")
    imports = rpc_count(tg, "ImportBotAuthorizationRequest")
    group = fleet.group(args, env={"store": store})
    status = group.login_status()
    assert status.state == "ready" and "corrupted session" in status.error, status
    assert group.stats()["corrupted_sessions"] == 1
    assert rpc_count(tg, "ImportBotAuthorizationRequest") == imports + 1
    key = fleet.poll(lambda: stored_key(fleet, store, library, args["name"]), 10,
                     "a good session stored again")
    assert len(key) == 256


def test_wrong_token_crashes_clearly_and_the_neighbour_keeps_working(fleet, tg, tmp_path):
    ctl = tg.control
    good = ctl.create_account("bot", provision_key=False)
    bad = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")
    good_args = backend_args(tg, good, "telethon", tmp_path / "good")
    bad_args = backend_args(tg, bad, "pyrogram", tmp_path / "bad",
                            token=bad["bot_token"].split(":")[0] + ":revoked")

    def group_spec(cid, args, restart):
        return ChildSpec(cid, "actors.supervisor.BotGroup", {
            "children": [ChildSpec("backend", BACKENDS[args["library"]], args,
                                   restart=restart, kind="backend"),
                         ChildSpec("probe", "tests.support.backend_probe.BackendProbe",
                                   {"bot": args["name"]})],
            "probe_interval": 0.5}, kind="supervisor")
    # A revoked token does not heal by restarting: `temporary` keeps its crash on record
    # instead of crash-looping until the group escalates.
    root = fleet.start("actors.supervisor.Supervisor", "root", {
        "children": [group_spec("good", good_args, "permanent"),
                     group_spec("bad", bad_args, TEMPORARY)],
        "backoff": {"base_s": 0.05, "max_s": 0.5}, "probe_interval": 0.5})

    def rows():
        st = fleet.ask(root, TreeStatusRequest("t"), 5, TreeStatus)
        return {r.path: r for r in st.rows} if st else {}
    bad_row = fleet.poll(lambda: rows().get("root/bad/backend"), 20, "bad backend row")
    assert bad_row.state == "failed"
    assert "token" in bad_row.last_error and "revoked/invalid" in bad_row.last_error, bad_row
    assert rows()["root/good/backend"].state == "running"

    neighbour = Group(fleet, fleet.poll(lambda: root_child(fleet, root, "good"), 10, "good"),
                      good_args["name"])
    sent = ctl.send_as(user["user_id"], good["user_id"], "are you there?")
    msg = neighbour.wait_collect(lambda c: c.updates, what="message to the good bot").updates[0]
    neighbour.act(("r", SendText(chat_id=msg.chat_id, text="yes", reply_to=msg.message_id)))
    assert neighbour.results(["r"])["r"].ok
    assert [m["text"] for m in ctl.received(user["user_id"], since_id=sent["id"])] == ["yes"]


def root_child(fleet, root, child_id):
    from messages.lifecycle import ChildAddress, WhereIs
    reply = fleet.ask(root, WhereIs(child_id, "w"), 5, ChildAddress)
    return reply.address if reply is not None else None

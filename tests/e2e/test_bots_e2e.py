"""Issue 4 end to end, on both bases, with real Telethon and real Pyrogram clients inside the
fleet talking MTProto to the local Telegram: bots created with `ops/ctl create` log in and
answer; a user account logs in with phone + code through `ops/ctl login`; echo, autoreply,
forward (a media group stays together) and relay; a backend SIGKILLed mid-conversation resumes
its stored session without a new login and answers what it missed."""
import asyncio
import json
import os
import signal

import pytest

from system.localtg.clients import register_rsa_key, telethon_client, telethon_start
from tests.e2e.helpers import localtg_of, replies_to, server_of, wait_until
from tests.ops.conftest import start_fleet, stop_fleet


def ctl_ok(fleet, *args):
    r = fleet.ctl("--json", *args)
    assert r.returncode == 0, f"ctl {args} failed: {r.stdout} {r.stderr}"
    return json.loads(r.stdout)["result"]


def create(fleet, name, library, extra: dict, server: dict):
    cfg = dict(extra, server=server)
    return ctl_ok(fleet, "create", name, "--library", library, "--config-json", json.dumps(cfg))


def status(fleet):
    return {a["path"]: a for a in ctl_ok(fleet, "status")["actors"]}


def wait_running(fleet, name, timeout=60):
    return wait_until(lambda: status(fleet).get(f"root/bots/{name}", {}).get("state")
                      == "running", timeout, what=f"bot {name} running")


def ask(tg, user, bot, text, timeout=30):
    """A simulated user writes to `bot`; returns the bot's first reply after it."""
    sent = tg.send_as(user["user_id"], bot["user_id"], text)
    got = wait_until(lambda: [m for m in replies_to(tg, user["user_id"], bot["user_id"],
                                                    since_id=sent["id"])],
                     timeout, what=f"a reply to {text!r}")
    return got[0]["text"]


def login_count(tg, method):
    return sum(v for k, v in tg.stats()["rpc_counts"].items() if method in k)


@pytest.mark.parametrize("base", ["inprocess", "processes"])
def test_bots_users_handlers_and_recovery(tmp_path, base):
    fleet = start_fleet(tmp_path, base, localtg=True, demo_bots=0,
                        wait_for="0 of 0 bots running")
    try:
        tg = localtg_of(fleet)
        server = server_of(fleet)
        alice = tg.create_account("user", username="alice")

        # ---- bots created with ctl, one per library, they log in and answer ----------------
        echo_t = tg.create_account("bot", username="echo_t_bot")
        auto_p = tg.create_account("bot", username="auto_p_bot")
        create(fleet, "echo-t", "telethon", {"token": echo_t["bot_token"],
                                             "handlers": [{"type": "echo"}]}, server)
        create(fleet, "auto-p", "pyrogram", {"token": auto_p["bot_token"], "handlers": [
            {"type": "autoreply", "rules": [{"match": "price", "reply": "It is free: {text}"}],
             "default": "first word: {first_word}"}]}, server)
        wait_running(fleet, "echo-t")
        wait_running(fleet, "auto-p")
        assert ask(tg, alice, echo_t, "hello there") == "hello there"
        assert ask(tg, alice, auto_p, "what is the price") == "It is free: what is the price"
        assert ask(tg, alice, auto_p, "banana split") == "first word: banana"

        # ---- user accounts log in with phone + code through ctl login -----------------------
        for library, phone in (("telethon", "+15550001001"), ("pyrogram", "+15550001002")):
            name = f"me-{library[0]}"
            acct = tg.create_account("user", phone=phone, username=f"me_{library}",
                                     provision_key=False)
            create(fleet, name, library, {"account_kind": "user", "phone": phone,
                                          "handlers": [{"type": "echo", "prefix": "me: "}]},
                   server)
            wait_until(lambda: ctl_ok(fleet, "login", name, "--status")["state"] in ("awaiting_code",
                                                                          "ready"),
                       60, what=f"{name} asks for a code")
            r = fleet.ctl("login", name, "--code", "22222")
            assert r.returncode == 0, r.stderr
            wait_until(lambda: ctl_ok(fleet, "login", name, "--status")["state"] == "ready", 60,
                       what=f"{name} logged in")
            assert ask(tg, alice, acct, "ping") == "me: ping"

        # ---- relay: a user account relays alice's message to the echo bot and back ----------
        relay_phone = "+15550001003"
        relay = tg.create_account("user", phone=relay_phone, username="relayer",
                                  provision_key=False)
        create(fleet, "relay", "telethon", {"account_kind": "user", "phone": relay_phone,
                                            "handlers": [{"type": "relay",
                                                          "peer": echo_t["user_id"]}]}, server)
        wait_until(lambda: ctl_ok(fleet, "login", "relay", "--status")["state"] == "awaiting_code", 60,
                   what="relay asks for a code")
        assert fleet.ctl("login", "relay", "--code", "22222").returncode == 0
        wait_until(lambda: ctl_ok(fleet, "login", "relay", "--status")["state"] == "ready", 60,
                   what="relay logged in")
        assert ask(tg, alice, relay, "echo me please") == "echo me please"

        # ---- forward: a media group from a group reaches the channel in one piece -----------
        fwd = tg.create_account("bot", username="fwd_bot")
        poster = tg.create_account("user", username="poster")
        group = tg.create_chat("group", "sources", [poster["user_id"], fwd["user_id"],
                                                    alice["user_id"]])
        channel = tg.create_chat("channel", "digest", [fwd["user_id"], alice["user_id"]],
                                 admin_ids=[fwd["user_id"]])
        create(fleet, "fwd", "telethon", {"token": fwd["bot_token"], "handlers": [
            {"type": "forward", "sources": [group["peer_id"]],
             "targets": [channel["peer_id"]], "group_window_s": 0.3}]}, server)
        wait_running(fleet, "fwd")
        asyncio.run(_post_album(server, poster, group["peer_id"], tmp_path))
        tg.send_as(poster["user_id"], group["peer_id"], "plain news")

        def forwarded():
            msgs = [m for m in tg.history(alice["user_id"], channel["peer_id"], limit=50)
                    if m.get("fwd_from")]
            return msgs if len(msgs) >= 3 else None
        msgs = wait_until(forwarded, 30, what="3 forwarded messages in the channel")
        albums = [m for m in msgs if m.get("grouped_id")]
        assert len(albums) == 2 and len({m["grouped_id"] for m in albums}) == 1
        assert any(m.get("text") == "plain news" for m in msgs)

        # ---- SIGKILL the backend mid-conversation: resume without a new login ---------------
        if base == "processes":
            before = login_count(tg, "ImportBotAuthorization")
            pid = status(fleet)["root/bots/echo-t/backend"]["pid"]
            assert pid > 1
            os.kill(pid, signal.SIGKILL)
            sent = [tg.send_as(alice["user_id"], echo_t["user_id"], f"missed {i}")
                    for i in range(3)]
            # (one process per bot, the default: the bot goes with it, and the group's rows
            # are missing while it restarts)
            wait_until(lambda: status(fleet).get("root/bots/echo-t/backend", {}).get("pid")
                       not in (None, 0, pid) and
                       status(fleet)["root/bots/echo-t/backend"]["state"] == "running",
                       30, what="backend restarted")
            texts = wait_until(lambda: (lambda r: r if {f"missed {i}" for i in range(3)} <= r
                                        else None)({m["text"] for m in replies_to(
                                            tg, alice["user_id"], echo_t["user_id"],
                                            since_id=sent[0]["id"] - 1)}),
                               30, what="the messages sent while the backend was down")
            assert login_count(tg, "ImportBotAuthorization") == before, \
                "the restarted backend logged in again instead of resuming its session"
            replies = replies_to(tg, alice["user_id"], echo_t["user_id"],
                                 since_id=sent[0]["id"] - 1)
            assert len([m for m in replies if m["text"].startswith("missed")]) == 3, \
                "duplicate replies after the restart"
            assert texts
    finally:
        rc, left = stop_fleet(fleet)
    assert not left, left
    assert rc == 0, fleet.output()[-4000:]


async def _post_album(server, poster, group_peer, tmp_path):
    """A real Telethon user client posts a two-photo album into the source group."""
    register_rsa_key(server["rsa_public_key"])
    client = telethon_client(poster, server["host"], server["port"])
    await telethon_start(client, poster)
    files = []
    for i in range(2):
        p = tmp_path / f"photo{i}.jpg"
        p.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000) + b"\xff\xd9")
        files.append(str(p))
    try:
        await client.send_file(group_peer, files, force_document=True)
    finally:
        await client.disconnect()

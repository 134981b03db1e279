"""Control surface, accounts file, persistence across restarts, crowd, delay, clean stop."""
from __future__ import annotations

import asyncio
import json
import os
import time

from telethon import events

from system.localtg.clients import register_rsa_key, telethon_client
from system.localtg.control import ControlClient, ControlError
from system.localtg.testing import run_local_telegram

from .conftest import next_item, run

import pytest


def test_ready_and_accounts_files(tmp_path):
    with run_local_telegram(tmp_path, bots=2, users=1, seed_demo=True) as tg:
        ready = json.loads(open(os.path.join(tg.data_dir, "ready.json")).read())
        assert ready == {"host": "127.0.0.1", "port": tg.port, "control_port": tg.control_port, "pid": tg.pid}
        doc = tg.accounts_doc()
        assert doc["host"] == "127.0.0.1" and doc["port"] == tg.port and doc["dc_id"] == 2
        assert "BEGIN RSA PUBLIC KEY" in doc["rsa_public_key"]
        kinds = sorted(a["kind"] for a in doc["accounts"])
        assert kinds == ["bot", "bot", "user"]
        for a in doc["accounts"]:
            assert len(bytes.fromhex(a["auth_key_hex"])) == 256
            assert a["bot_token"] if a["kind"] == "bot" else a["phone"]
        chats = tg.control.chats()
        assert {c["kind"] for c in chats} == {"group", "channel"}
        new = tg.control.create_account("user", username="late_one")

        def has_new():
            return any(a["user_id"] == new["user_id"] for a in tg.accounts())
        deadline = time.monotonic() + 5
        while not has_new() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert has_new()
        proc = tg.proc
    assert proc.returncode == 0  # SIGTERM -> clean stop, exit status 0
    assert not os.path.exists(os.path.join(tmp_path, "localtg", "ready.json"))


def test_control_errors_are_reported(tg, ctl):
    with pytest.raises(ControlError):
        ctl.send_as(999, 1, "nobody")
    with pytest.raises(ControlError):
        ctl.call("no_such_operation")
    a = ctl.create_account("user", username="unique_name_1")
    with pytest.raises(ControlError):
        ctl.create_account("user", username="unique_name_1")
    assert ctl.ping() == "pong" and any(x["user_id"] == a["user_id"] for x in ctl.accounts())


def test_world_survives_a_restart(tmp_path):
    with run_local_telegram(tmp_path) as tg:
        c = tg.control
        bot = c.create_account("bot")
        user = c.create_account("user")
        grp = c.create_chat("group", "persist", [bot["user_id"], user["user_id"]])
        m1 = c.send_as(user["user_id"], bot["user_id"], "before restart")
        c.send_as(user["user_id"], grp["peer_id"], "group before restart")
        pts_before = c.stats()["messages_total"]
        rsa_pem = tg.rsa_public_key
    with run_local_telegram(tmp_path) as tg:
        c = tg.control
        assert {a["user_id"] for a in c.accounts()} >= {bot["user_id"], user["user_id"]}
        assert tg.rsa_public_key == rsa_pem
        assert [m["text"] for m in c.received(bot["user_id"])] == ["before restart", "group before restart"]
        assert c.stats()["messages_total"] == pts_before
        m2 = c.send_as(user["user_id"], bot["user_id"], "after restart")
        assert m2["id"] > m1["id"]

        async def main():
            cl = telethon_client(bot, tg.host, tg.port)
            await cl.start()
            state = await cl(__import__("telethon").functions.updates.GetStateRequest())
            history_ok = (await cl.get_me()).id == bot["user_id"]
            await cl.disconnect()
            return state, history_ok

        state, ok = run(main())
        assert ok and state.pts == 4  # pts 1 (start) + three events, kept across the restart


def test_crowd_with_a_telethon_echo_bot(tg, ctl):
    bot = ctl.create_account("bot")

    async def main():
        c = telethon_client(bot, tg.host, tg.port)

        @c.on(events.NewMessage(incoming=True))
        async def echo(ev):
            await ev.reply("answer to " + ev.raw_text)

        await c.start()
        ctl.crowd_start([bot["user_id"]], users=3, rate_per_s=20, duration_s=1.0)
        loop = asyncio.get_running_loop()
        end = loop.time() + 15
        while loop.time() < end:
            st = ctl.crowd_stats()
            if not st["running"] and st["answered"] >= st["sent"]:
                break
            await asyncio.sleep(0.1)
        await c.disconnect()
        return st

    st = run(main())
    assert st["sent"] >= 15 and st["answered"] == st["sent"] and st["unanswered"] == 0
    assert st["duplicates"] == 0 and st["per_bot"][str(bot["user_id"])]["answered"] == st["sent"]
    assert st["latency_ms"]["p50"] is not None and st["latency_ms"]["max"] >= st["latency_ms"]["p50"]
    assert ctl.crowd_stop()["running"] is False


def test_delay_slows_a_sequential_client_and_can_be_switched_off(tg, ctl):
    bot = ctl.create_account("bot")
    ctl.set_limits(delay_ms=100, jitter_ms=10)
    try:
        async def main():
            c = telethon_client(bot, tg.host, tg.port)
            await c.start()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for _ in range(5):
                await c.get_me(input_peer=False)
                await c(__import__("telethon").functions.updates.GetStateRequest())
            elapsed = loop.time() - t0
            await c.disconnect()
            return elapsed

        elapsed = run(main())
        # 10 sequential round trips with >= 90 ms each (delay minus jitter) cannot be faster.
        assert elapsed >= 10 * 0.09
    finally:
        limits = ctl.set_limits(delay_ms=0, jitter_ms=0)
    assert limits["delay_ms"] == 0


def test_set_limits_switches_flood_limits(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    ctl.set_limits(flood_limits=False)
    try:
        async def main():
            c = telethon_client(bot, tg.host, tg.port, flood_sleep_threshold=0)
            await c.start()
            for i in range(10):
                await c.send_message(user["user_id"], "no limits %d" % i)
            await c.disconnect()

        run(main())
        assert ctl.flood_stats()["by_account"].get(str(bot["user_id"]), 0) == 0
        assert len(ctl.received(user["user_id"])) == 10
    finally:
        assert ctl.set_limits(flood_limits=True)["flood_limits"] is True


def test_register_rsa_key_is_idempotent(tg):
    register_rsa_key(tg.rsa_public_key)
    register_rsa_key(tg.rsa_public_key)
    cc = ControlClient(tg.host, tg.control_port)
    assert cc.stats()["connections"] >= 0
    cc.close()

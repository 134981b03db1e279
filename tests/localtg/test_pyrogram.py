"""Real Pyrogram (kurigram) clients (bot and user) against the local Telegram."""
from __future__ import annotations

import asyncio

import pytest
from pyrogram import errors

from system.localtg.clients import pyrogram_client

from .conftest import next_item, run, wait_until


def client(tg, account, **kw):
    kw.setdefault("max_message_cache_size", 100)
    return pyrogram_client(account, tg.host, tg.port, **kw)


def test_bot_fresh_key_exchange_and_token_login(tg, ctl):
    bot = ctl.create_account("bot", provision_key=False)

    async def main():
        c = client(tg, bot, provisioned=False)
        await c.start()
        me = c.me
        await c.stop()
        return me

    me = run(main())
    assert me.id == bot["user_id"] and me.is_bot and me.username == bot["username"]


def test_user_fresh_login_with_phone_code(tg, ctl):
    user = ctl.create_account("user", provision_key=False)

    async def main():
        c = client(tg, user, provisioned=False)
        await c.start()
        me = c.me
        await c.stop()
        return me

    me = run(main())
    assert me.id == user["user_id"] and not me.is_bot and me.phone_number == user["phone"]


def test_bot_with_provisioned_key_receives_push_and_replies(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")

    async def main():
        c = client(tg, bot)
        got = asyncio.Queue()

        @c.on_message()
        async def echo(_client, message):
            await got.put(message)
            await message.reply("echo " + message.text)

        await c.start()
        assert c.me.id == bot["user_id"]
        sent = ctl.send_as(user["user_id"], bot["user_id"], "hello")
        m = await next_item(got)
        assert m.text == "hello" and m.from_user.id == user["user_id"] and m.id == sent["id"]
        answers = await wait_until(lambda: ctl.received(user["user_id"], since_id=sent["id"]))
        await c.stop()
        return sent, answers

    sent, answers = run(main())
    assert answers[0]["text"] == "echo hello" and answers[0]["reply_to"] == sent["id"]


def test_send_to_user_group_and_channel(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    other = ctl.create_account("user")
    group = ctl.create_chat("group", "pg group", [bot["user_id"], user["user_id"], other["user_id"]])
    channel = ctl.create_chat("channel", "pg channel", [bot["user_id"], user["user_id"], other["user_id"]],
                              admin_ids=[bot["user_id"]])

    async def main():
        b = client(tg, bot)
        u = client(tg, user)
        seen = asyncio.Queue()

        @u.on_message()
        async def on_user(_client, message):
            if not message.outgoing:
                await seen.put((message.chat.id, message.text))

        await b.start()
        await u.start()
        await b.send_message(user["user_id"], "bot to user")
        assert await next_item(seen) == (bot["user_id"], "bot to user")
        await b.send_message(group["peer_id"], "bot to group")
        assert await next_item(seen) == (group["peer_id"], "bot to group")
        await b.send_message(channel["peer_id"], "bot to channel")
        assert await next_item(seen) == (channel["peer_id"], "bot to channel")
        await u.send_message(bot["username"], "user to bot by username")
        await b.stop()
        await u.stop()

    run(main())
    texts = {(r["peer"], r["text"]) for r in ctl.received(other["user_id"])}
    assert (group["peer_id"], "bot to group") in texts and (channel["peer_id"], "bot to channel") in texts
    assert ctl.received(bot["user_id"])[-1]["text"] == "user to bot by username"


def test_group_and_channel_posts_reach_on_message(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    group = ctl.create_chat("group", "g", [bot["user_id"], user["user_id"]])
    channel = ctl.create_chat("channel", "c", [bot["user_id"], user["user_id"]], admin_ids=[user["user_id"]])

    async def main():
        b = client(tg, bot)
        got = asyncio.Queue()

        @b.on_message()
        async def h(_client, message):
            await got.put((message.chat.id, message.text))

        await b.start()
        ctl.send_as(user["user_id"], group["peer_id"], "group post")
        ctl.send_as(user["user_id"], channel["peer_id"], "channel post")
        out = [await next_item(got), await next_item(got)]
        await b.stop()
        return out

    out = run(main())
    assert (group["peer_id"], "group post") in out and (channel["peer_id"], "channel post") in out


def test_restart_recovers_missed_messages_through_get_difference(tg, ctl, tmp_path):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    channel = ctl.create_chat("channel", "news", [bot["user_id"], user["user_id"]], admin_ids=[user["user_id"]])

    async def main():
        # A file session keeps pyrogram's update state across stop/start.
        c = client(tg, bot, workdir=str(tmp_path), skip_updates=False)
        got = asyncio.Queue()

        @c.on_message()
        async def h(_client, message):
            await got.put(message.text)

        await c.start()
        ctl.send_as(user["user_id"], bot["user_id"], "live")
        assert await next_item(got) == "live"
        ctl.send_as(user["user_id"], channel["peer_id"], "live post")
        assert await next_item(got) == "live post"
        await c.stop(clear_handlers=False)
        before = ctl.stats()["rpc_counts"].get("GetDifferenceRequest", 0)
        for i in range(3):
            ctl.send_as(user["user_id"], bot["user_id"], "missed %d" % i)
        ctl.send_as(user["user_id"], channel["peer_id"], "missed post")
        await c.start()
        texts = sorted([await next_item(got) for _ in range(4)])
        after = ctl.stats()["rpc_counts"].get("GetDifferenceRequest", 0)
        await c.stop()
        return texts, before, after

    texts, before, after = run(main())
    assert texts == ["missed 0", "missed 1", "missed 2", "missed post"]
    assert after > before


def test_flood_wait_surfaces_as_flood_wait(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    before = ctl.flood_stats()["by_account"].get(str(bot["user_id"]), 0)

    async def main():
        c = client(tg, bot, sleep_threshold=0)
        await c.start()
        sent = 0
        with pytest.raises(errors.FloodWait) as exc:
            for i in range(20):
                await c.send_message(user["user_id"], "spam %d" % i)
                sent += 1
        await c.stop()
        return sent, exc.value.value

    sent, seconds = run(main())
    assert 1 <= sent < 20 and seconds >= 1
    assert ctl.flood_stats()["by_account"][str(bot["user_id"])] == before + 1

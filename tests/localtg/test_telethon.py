"""Real Telethon clients (bot and user) against the local Telegram."""
from __future__ import annotations

import asyncio

import pytest
from telethon import errors, events

from system.localtg.clients import telethon_client, telethon_start

from .conftest import next_item, run, wait_until


def client(tg, account, **kw):
    return telethon_client(account, tg.host, tg.port, **kw)


def test_bot_fresh_key_exchange_and_token_login(tg, ctl):
    bot = ctl.create_account("bot", provision_key=False)

    async def main():
        c = client(tg, bot, provisioned=False)
        await telethon_start(c, bot)
        me = await c.get_me()
        key = c.session.auth_key.key
        await c.disconnect()
        return me, key

    me, key = run(main())
    assert me.id == bot["user_id"] and me.bot and me.username == bot["username"]
    assert len(key) == 256
    assert ctl.stats()["counters"].get("keys_created", 0) >= 1


def test_user_fresh_login_with_phone_code(tg, ctl):
    user = ctl.create_account("user", provision_key=False)

    async def main():
        c = client(tg, user, provisioned=False)
        await telethon_start(c, user)
        me = await c.get_me()
        await c.disconnect()
        return me

    me = run(main())
    assert me.id == user["user_id"] and not me.bot and me.phone == user["phone"]


def test_bot_with_provisioned_key_receives_push_and_replies(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")

    async def main():
        c = client(tg, bot)
        got = asyncio.Queue()

        @c.on(events.NewMessage(incoming=True))
        async def echo(ev):
            await got.put(ev)
            await ev.reply("echo " + ev.raw_text)

        await c.start()
        assert (await c.get_me()).id == bot["user_id"]
        sent = ctl.send_as(user["user_id"], bot["user_id"], "hello")
        ev = await next_item(got)
        assert ev.raw_text == "hello" and ev.sender_id == user["user_id"] and ev.id == sent["id"]
        answers = await wait_until(lambda: ctl.received(user["user_id"], since_id=sent["id"]))
        await c.disconnect()
        return sent, answers

    sent, answers = run(main())
    assert answers[0]["text"] == "echo hello" and answers[0]["reply_to"] == sent["id"]
    assert answers[0]["from_id"] == bot["user_id"]


def test_send_to_user_group_and_channel(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    other = ctl.create_account("user")
    group = ctl.create_chat("group", "tl group", [bot["user_id"], user["user_id"], other["user_id"]])
    channel = ctl.create_chat("channel", "tl channel", [bot["user_id"], user["user_id"], other["user_id"]],
                              admin_ids=[bot["user_id"], user["user_id"]])

    async def main():
        b = client(tg, bot)
        u = client(tg, user)
        await b.start()
        await u.start()
        seen = asyncio.Queue()

        @u.on(events.NewMessage(incoming=True))
        async def on_user(ev):
            await seen.put((ev.chat_id, ev.raw_text))

        m1 = await b.send_message(user["user_id"], "bot to user")
        assert await next_item(seen) == (bot["user_id"], "bot to user")
        m2 = await b.send_message(group["peer_id"], "bot to group")
        assert await next_item(seen) == (group["peer_id"], "bot to group")
        m3 = await b.send_message(channel["peer_id"], "bot to channel")
        assert await next_item(seen) == (channel["peer_id"], "bot to channel")
        m4 = await u.send_message(bot["username"], "user to bot by username")
        await b.disconnect()
        await u.disconnect()
        return m1, m2, m3, m4

    m1, m2, m3, m4 = run(main())
    assert m1.chat_id == user["user_id"] and m2.chat_id == group["peer_id"] and m3.chat_id == channel["peer_id"]
    texts = {(r["peer"], r["text"]) for r in ctl.received(other["user_id"])}
    assert (group["peer_id"], "bot to group") in texts and (channel["peer_id"], "bot to channel") in texts
    assert ctl.received(bot["user_id"])[-1]["text"] == "user to bot by username"


def test_group_and_channel_posts_reach_bot_handlers(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    group = ctl.create_chat("group", "g", [bot["user_id"], user["user_id"]])
    channel = ctl.create_chat("channel", "c", [bot["user_id"], user["user_id"]], admin_ids=[user["user_id"]])

    async def main():
        b = client(tg, bot)
        got = asyncio.Queue()

        @b.on(events.NewMessage)
        async def h(ev):
            await got.put((ev.chat_id, ev.raw_text, ev.is_channel, ev.is_group))

        await b.start()
        ctl.send_as(user["user_id"], group["peer_id"], "group post")
        ctl.send_as(user["user_id"], channel["peer_id"], "channel post")
        out = [await next_item(got), await next_item(got)]
        await b.disconnect()
        return out

    out = run(main())
    assert (group["peer_id"], "group post", False, True) in out
    assert (channel["peer_id"], "channel post", True, False) in out


def test_reconnect_gets_missed_messages_through_get_difference(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    channel = ctl.create_chat("channel", "news", [bot["user_id"], user["user_id"]], admin_ids=[user["user_id"]])

    async def main():
        c = client(tg, bot, catch_up=True)
        got = asyncio.Queue()

        @c.on(events.NewMessage(incoming=True))
        async def h(ev):
            await got.put(ev.raw_text)

        await c.start()
        ctl.send_as(user["user_id"], bot["user_id"], "live")
        assert await next_item(got) == "live"
        ctl.send_as(user["user_id"], channel["peer_id"], "live post")
        assert await next_item(got) == "live post"
        await c.disconnect()
        before = ctl.stats()["rpc_counts"].get("GetDifferenceRequest", 0)
        for i in range(3):
            ctl.send_as(user["user_id"], bot["user_id"], "missed %d" % i)
        ctl.send_as(user["user_id"], channel["peer_id"], "missed post")
        await c.connect()
        texts = sorted([await next_item(got) for _ in range(4)])
        after = ctl.stats()["rpc_counts"].get("GetDifferenceRequest", 0)
        await c.disconnect()
        return texts, before, after

    texts, before, after = run(main())
    assert texts == ["missed 0", "missed 1", "missed 2", "missed post"]
    assert after > before


def test_flood_wait_surfaces_as_flood_wait_error(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    before = ctl.flood_stats()["by_account"].get(str(bot["user_id"]), 0)

    async def main():
        c = client(tg, bot, flood_sleep_threshold=0)
        await c.start()
        sent = 0
        with pytest.raises(errors.FloodWaitError) as exc:
            for i in range(20):
                await c.send_message(user["user_id"], "spam %d" % i)
                sent += 1
        await c.disconnect()
        return sent, exc.value.seconds

    sent, seconds = run(main())
    assert 1 <= sent < 20 and seconds >= 1
    stats = ctl.flood_stats()
    assert stats["limits_on"] and stats["by_account"][str(bot["user_id"])] == before + 1


def test_sqlite_session_file_survives_a_new_client_object(tg, ctl, tmp_path):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    path = str(tmp_path / "bot.session")

    async def first():
        c = client(tg, bot, session=path)
        await c.start()
        await c.get_me()
        await c.disconnect()

    async def second():
        c = client(tg, bot, session=path, catch_up=True)
        got = asyncio.Queue()

        @c.on(events.NewMessage(incoming=True))
        async def h(ev):
            await got.put(ev.raw_text)

        await c.start()
        text = await next_item(got)
        await c.disconnect()
        return text

    run(first())
    ctl.send_as(user["user_id"], bot["user_id"], "while the process was down")
    assert run(second()) == "while the process was down"

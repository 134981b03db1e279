"""Media, albums, forwarding, edit/delete, history and dialogs with both libraries."""
from __future__ import annotations

import asyncio
import os

from pyrogram.types import InputMediaDocument, InputMediaPhoto
from telethon import events

from system.localtg.clients import pyrogram_client, telethon_client

from .conftest import next_item, run, wait_until


def _files(tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(os.urandom(5000))
    doc = tmp_path / "d.bin"
    doc.write_bytes(os.urandom(600 * 1024))  # several upload parts
    return str(photo), str(doc)


def test_telethon_media_album_forward_and_download(tg, ctl, tmp_path):
    ctl.set_limits(flood_limits=False)
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    group = ctl.create_chat("group", "fwd target", [bot["user_id"], user["user_id"]])
    photo, doc = _files(tmp_path)

    async def main():
        b = telethon_client(bot, tg.host, tg.port)
        u = telethon_client(user, tg.host, tg.port)
        await b.start()
        await u.start()
        got = asyncio.Queue()

        @u.on(events.NewMessage(incoming=True))
        async def h(ev):
            await got.put(ev.message)

        p = await b.send_file(user["user_id"], photo, caption="a photo")
        d = await b.send_file(user["user_id"], doc, caption="a doc", force_document=True)
        album = await b.send_file(user["user_id"], [photo, photo, photo], caption=["1", "2", "3"])
        received = [await next_item(got) for _ in range(5)]
        data = await u.download_media(received[1], file=bytes)
        fwd = await b.forward_messages(group["peer_id"], album)
        fwd_seen = [await next_item(got) for _ in range(3)]
        await b.disconnect()
        await u.disconnect()
        return p, d, album, received, data, fwd, fwd_seen

    try:
        p, d, album, received, data, fwd, fwd_seen = run(main())
    finally:
        ctl.set_limits(flood_limits=True)
    assert p.photo is not None and d.document is not None
    assert len({m.grouped_id for m in album}) == 1 and album[0].grouped_id
    assert [m.message for m in received] == ["a photo", "a doc", "1", "2", "3"]
    assert data == open(doc, "rb").read()
    assert len({m.grouped_id for m in fwd}) == 1 and fwd[0].grouped_id != album[0].grouped_id
    assert all(m.fwd_from and m.fwd_from.from_id.user_id == bot["user_id"] for m in fwd_seen)
    seen = ctl.received(user["user_id"])
    assert [s["media"] for s in seen[:2]] == ["photo", "document"]
    assert seen[-1]["fwd_from"]["from_id"] == bot["user_id"] and seen[-1]["grouped_id"]


def test_pyrogram_media_group_and_forward(tg, ctl, tmp_path):
    ctl.set_limits(flood_limits=False)
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    photo, doc = _files(tmp_path)

    async def main():
        b = pyrogram_client(bot, tg.host, tg.port)
        u = pyrogram_client(user, tg.host, tg.port)
        got = asyncio.Queue()

        @u.on_message()
        async def h(_c, m):
            if not m.outgoing:
                await got.put(m)

        await b.start()
        await u.start()
        ph = await b.send_photo(user["user_id"], photo, caption="photo")
        dc = await b.send_document(user["user_id"], doc, caption="doc")
        album = await b.send_media_group(user["user_id"], [InputMediaPhoto(photo, caption="x"),
                                                           InputMediaDocument(doc, caption="y")])
        seen = [await next_item(got) for _ in range(4)]
        data = await u.download_media(seen[1], in_memory=True)
        await b.stop()
        await u.stop()
        return ph, dc, album, seen, bytes(data.getbuffer())

    try:
        ph, dc, album, seen, data = run(main())
    finally:
        ctl.set_limits(flood_limits=True)
    assert ph.photo and dc.document
    assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
    assert [m.caption for m in seen] == ["photo", "doc", "x", "y"]
    assert seen[2].media_group_id == seen[3].media_group_id == album[0].media_group_id
    assert data == open(doc, "rb").read()


def test_edit_delete_history_and_dialogs_telethon(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    friend = ctl.create_account("user")
    group = ctl.create_chat("group", "hist", [user["user_id"], friend["user_id"], bot["user_id"]])

    async def main():
        u = telethon_client(user, tg.host, tg.port)
        await u.start()
        m = ctl.send_as(friend["user_id"], user["user_id"], "first")
        for i in range(5):
            ctl.send_as(friend["user_id"], group["peer_id"], "g%d" % i)
        mine = await u.send_message(friend["user_id"], "mine")
        await mine.edit("mine edited")
        await u.delete_messages(friend["user_id"], [mine.id])
        hist = await u.get_messages(group["peer_id"], limit=3)
        older = await u.get_messages(group["peer_id"], limit=10, offset_id=hist[-1].id)
        dialogs = await u.get_dialogs()
        with_friend = await u.get_messages(friend["user_id"], limit=10)
        await u.disconnect()
        return m, hist, older, dialogs, with_friend

    m, hist, older, dialogs, with_friend = run(main())
    assert [x.text for x in hist] == ["g4", "g3", "g2"] and [x.text for x in older] == ["g1", "g0"]
    names = [d.name for d in dialogs]
    assert "hist" in names and any(d.entity.id == friend["user_id"] for d in dialogs)
    assert [x.text for x in with_friend] == ["first"]  # "mine" was deleted for everyone
    assert [x["text"] for x in ctl.received(friend["user_id"])] == []


def test_edits_and_deletes_are_pushed_to_the_other_side(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")

    async def main():
        u = telethon_client(user, tg.host, tg.port)
        b = telethon_client(bot, tg.host, tg.port)
        await u.start()
        await b.start()
        seen = asyncio.Queue()

        @u.on(events.MessageEdited)
        async def edited(ev):
            await seen.put(("edit", ev.raw_text))

        @u.on(events.MessageDeleted)
        async def deleted(ev):
            await seen.put(("delete", tuple(ev.deleted_ids)))

        m = await b.send_message(user["user_id"], "v1")
        await b.edit_message(user["user_id"], m.id, "v2")
        assert await next_item(seen) == ("edit", "v2")
        await b.delete_messages(user["user_id"], [m.id])
        assert await next_item(seen) == ("delete", (m.id,))
        await u.disconnect()
        await b.disconnect()

    run(main())
    assert ctl.received(user["user_id"]) == []


def test_bots_cannot_read_history_like_on_telegram(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    ctl.send_as(user["user_id"], bot["user_id"], "hi")

    async def main():
        b = telethon_client(bot, tg.host, tg.port)
        await b.start()
        try:
            await b.get_messages(user["user_id"], limit=5)
        except Exception as e:  # noqa: BLE001 - the test checks the error type below
            return e
        finally:
            await b.disconnect()

    err = run(main())
    assert type(err).__name__ == "BotMethodInvalidError"


def test_participants_and_entities(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    sg = ctl.create_chat("supergroup", "sg", [bot["user_id"], user["user_id"]], admin_ids=[user["user_id"]])
    grp = ctl.create_chat("group", "basic", [bot["user_id"], user["user_id"]])

    async def main():
        u = telethon_client(user, tg.host, tg.port)
        await u.start()
        parts = await u.get_participants(sg["peer_id"])
        basic = await u.get_participants(grp["peer_id"])
        ent = await u.get_entity(sg["peer_id"])
        me_in = await u.get_permissions(sg["peer_id"], "me")
        await u.disconnect()
        return parts, basic, ent, me_in

    parts, basic, ent, me_in = run(main())
    assert {p.id for p in parts} == {bot["user_id"], user["user_id"]}
    assert {p.id for p in basic} == {bot["user_id"], user["user_id"]}
    assert ent.megagroup and ent.title == "sg" and me_in.is_admin


def test_formatting_entities_survive_send_forward_and_edit(tg, ctl):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")
    grp = ctl.create_chat("group", "fmt", [bot["user_id"], user["user_id"]])

    async def main():
        b = telethon_client(bot, tg.host, tg.port)
        p = pyrogram_client(user, tg.host, tg.port)
        got = asyncio.Queue()

        @p.on_message()
        async def h(_c, m):
            if not m.outgoing:
                await got.put(m)

        await b.start()
        await p.start()
        m = await b.send_message(user["user_id"], "**bold** and [link](https://example.org)")
        seen = await next_item(got)
        await b.forward_messages(grp["peer_id"], m)
        fwd_seen = await next_item(got)
        await b.disconnect()
        await p.stop()
        return m, seen, fwd_seen

    m, seen, fwd_seen = run(main())
    assert m.raw_text == "bold and link" and len(m.entities) == 2
    assert seen.text == "bold and link"
    assert [e.type.name for e in seen.entities] == ["BOLD", "TEXT_LINK"] and seen.entities[1].url == "https://example.org"
    assert [e.type.name for e in fwd_seen.entities] == ["BOLD", "TEXT_LINK"]
    info = ctl.received(user["user_id"])[0]["entities"]
    assert info[0] == {"type": "MessageEntityBold", "offset": 0, "length": 4}
    assert info[1]["url"] == "https://example.org"

"""What the backends turn library messages into, and actions into library calls, beyond text:
photos, documents and albums in (MediaRef, grouped_id), an album forwarded in ONE call (the
group stays together, fwd_from set), media re-sent from a MediaRef, edit and delete; group and
channel posts with their kinds and marked ids."""
from __future__ import annotations

import asyncio
import os

import pytest

from messages.telegram import DeleteMessages, EditText, ForwardMessages, SendMedia, SendText
from system.localtg.clients import telethon_client

from .conftest import backend_args, tg_unlimited

tg = tg_unlimited  # this module's local Telegram: flood limits off


def send_media_as_user(tg, user, bot_username, tmp_path):
    """A real Telethon user client sends an album of two photos and a document to the bot."""
    photo = tmp_path / "p.jpg"
    photo.write_bytes(os.urandom(3000))
    doc = tmp_path / "d.bin"
    doc.write_bytes(os.urandom(70_000))

    async def main():
        client = telethon_client(user, tg.host, tg.port)
        await client.start()
        album = await client.send_file(bot_username, [str(photo), str(photo)],
                                       caption=["one", "two"])
        document = await client.send_file(bot_username, str(doc), caption="a doc",
                                          force_document=True)
        await client.disconnect()
        return [m.id for m in album], document.id
    return asyncio.run(main())


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_media_album_forward_edit_delete(inprocess_fleet, tg, tmp_path, library):
    fleet, ctl = inprocess_fleet, tg.control
    bot = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")
    other = ctl.create_account("user")
    group = fleet.group(backend_args(tg, bot, library, tmp_path))
    assert group.login_status().state == "ready"
    ctl.send_as(other["user_id"], bot["user_id"], "hi")        # the bot learns `other`
    album_ids, doc_id = send_media_as_user(tg, user, bot["username"], tmp_path)
    got = group.wait_collect(lambda c: len(c.updates) >= 4, what="album and document")
    by_id = {u.message_id: u for u in got.updates if u.chat_id == user["user_id"]}
    first, second, document = by_id[album_ids[0]], by_id[album_ids[1]], by_id[doc_id]
    assert first.media.kind == second.media.kind == "photo" and first.media.file_id
    assert first.grouped_id and first.grouped_id == second.grouped_id
    assert (first.text, second.text) == ("one", "two")
    assert document.media.kind == "document" and document.media.file_id
    assert document.text == "a doc" and document.grouped_id is None

    since = ctl.received(other["user_id"])[-1]["id"] if ctl.received(other["user_id"]) else 0
    group.act(("fwd", ForwardMessages(from_chat_id=user["user_id"],
                                      message_ids=tuple(album_ids),
                                      to_chat_id=other["user_id"])),
              ("media", SendMedia(chat_id=other["user_id"], media=document.media,
                                  caption="doc again")),
              ("text", SendText(chat_id=other["user_id"], text="draft")))
    res = group.results(["fwd", "media", "text"])
    assert all(r.ok for r in res.values()), res
    assert len(res["fwd"].message_ids) == 2
    seen = ctl.received(other["user_id"], since_id=since)
    forwarded = [m for m in seen if m["id"] in res["fwd"].message_ids]
    assert len(forwarded) == 2 and forwarded[0]["grouped_id"] == forwarded[1]["grouped_id"]
    assert forwarded[0]["grouped_id"] and forwarded[0]["fwd_from"]["from_id"] == user["user_id"]
    (resent,) = [m for m in seen if m["id"] == res["media"].message_ids[0]]
    assert (resent["media"], resent["text"]) == ("document", "doc again")

    text_id = res["text"].message_ids[0]
    group.act(("edit", EditText(chat_id=other["user_id"], message_id=text_id, text="final")))
    assert group.results(["edit"])["edit"].ok
    history = {m["id"]: m for m in ctl.history(other["user_id"], bot["user_id"])}
    assert history[text_id]["text"] == "final"
    group.act(("del", DeleteMessages(chat_id=other["user_id"], message_ids=(text_id,))))
    assert group.results(["del"])["del"].ok
    assert text_id not in {m["id"] for m in ctl.history(other["user_id"], bot["user_id"])}


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_group_and_channel_posts(inprocess_fleet, tg, tmp_path, library):
    fleet, ctl = inprocess_fleet, tg.control
    bot = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")
    grp = ctl.create_chat("group", "g", [bot["user_id"], user["user_id"]])
    sgrp = ctl.create_chat("supergroup", "sg", [bot["user_id"], user["user_id"]])
    chan = ctl.create_chat("channel", "c", [bot["user_id"], user["user_id"]],
                           admin_ids=[user["user_id"], bot["user_id"]])
    group = fleet.group(backend_args(tg, bot, library, tmp_path))
    assert group.login_status().state == "ready"
    for chat, text in ((grp, "in group"), (sgrp, "in supergroup"), (chan, "in channel")):
        ctl.send_as(user["user_id"], chat["peer_id"], text)
    got = group.wait_collect(lambda c: len(c.updates) >= 3, what="three posts").updates
    kinds = {u.text: (u.chat_id, u.chat_kind) for u in got}
    assert kinds == {"in group": (grp["peer_id"], "group"),
                     "in supergroup": (sgrp["peer_id"], "group"),
                     "in channel": (chan["peer_id"], "channel")}
    assert next(u for u in got if u.text == "in group").sender_id == user["user_id"]
    group.act(*[(t, SendText(chat_id=c["peer_id"], text="reply " + t))
                for t, c in (("g", grp), ("s", sgrp), ("c", chan))])
    res = group.results(["g", "s", "c"])
    assert all(r.ok for r in res.values()), res
    texts = {m["text"] for m in ctl.received(user["user_id"])}
    assert {"reply g", "reply s", "reply c"} <= texts

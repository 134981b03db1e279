"""A Telethon backend gives a new message to the actors straight from the receive loop
(actors/backends/telethon_fastpath.py) and Telethon's bookkeeping follows: on both bases, with
a real Telethon client and the local Telegram, each message reaches the bot once, converted
exactly as Telethon's handler path converts it (a backend with `fast_updates` off, beside it),
the answer goes out to a user the account had never seen, and the saved session state covers
every message (Telethon applied each one after the fact)."""
from __future__ import annotations

import time

from actors.backends.base import decode_session

from .conftest import backend_args, tg_unlimited

tg = tg_unlimited  # flood limits off

SAME = ("chat_kind", "sender_id", "text", "reply_to", "media", "grouped_id", "fwd_from",
        "outgoing", "sender_username")


def stored_pts(fleet, store, name):
    blob = fleet.session_in_store(store, f"{name}.telethon")
    if blob is None:
        return None
    state = decode_session("telethon", blob)["state"]
    return state[0] if state else None


def test_fast_updates_match_telethons_path_once_each_and_the_state_follows(fleet, tg,
                                                                          tmp_path):
    ctl = tg.control
    store = fleet.store(str(tmp_path / "store.db"))
    user = ctl.create_account("user")
    groups, names, chats = {}, {}, {}
    for fast in (True, False):
        bot = ctl.create_account("bot", provision_key=False)
        args = backend_args(tg, bot, "telethon", tmp_path / f"fast-{fast}", session_save_s=0.2,
                            fast_updates=fast)
        groups[fast] = fleet.group(args, env={"store": store}, probe={"echo": True, "ack": True})
        names[fast] = args["name"]
        chats[fast] = ctl.create_chat("group", f"fast {fast}", [bot["user_id"], user["user_id"]])
    before = {}
    for fast, group in groups.items():
        group.wait_collect(lambda c: c.states and c.states[-1].login_state == "ready",
                           what="ready")
        before[fast] = fleet.poll(lambda: stored_pts(fleet, store, names[fast]), 10,
                                  "a stored session state")

    peers = {fast: [groups[fast].stats()["self_id"], chats[fast]["peer_id"]]
             for fast in groups}
    for i, text in enumerate(["first", "second", "third", "in the group"]):
        for fast, group in groups.items():
            peer = peers[fast][1] if text == "in the group" else peers[fast][0]
            ctl.send_as(user["user_id"], peer, text)
            group.results([f"echo-{i + 1}"], timeout=20)     # answered before the next one

    assert groups[True].stats()["fast_updates"] == 4
    assert groups[False].stats()["fast_updates"] == 0
    # Telethon applied every message: the saved state is 8 past (4 in, 4 answers)
    for fast in groups:
        fleet.poll(lambda: stored_pts(fleet, store, names[fast]) == before[fast] + 8, 15,
                   f"the stored pts to follow the 4 messages and answers (fast={fast})")
    time.sleep(0.5)         # Telethon has dispatched them all: none may reach the bot again
    got = {fast: groups[fast].collect() for fast in groups}
    for fast in groups:
        assert [u.text for u in got[fast].updates] == ["first", "second", "third",
                                                        "in the group"]
        assert all(r.ok for r in got[fast].results), got[fast].results
    for quick, slow in zip(got[True].updates, got[False].updates):
        assert {k: getattr(quick, k) for k in SAME} == {k: getattr(slow, k) for k in SAME}
        assert quick.resume is not None and slow.resume is not None
    assert got[True].updates[0].sender_username == (user["username"] or "")
    assert [u.chat_kind for u in got[True].updates] == ["private"] * 3 + ["group"]
    assert got[True].updates[3].chat_id == chats[True]["peer_id"]
    assert got[True].updates[0].chat_id == user["user_id"]

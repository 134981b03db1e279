"""Hundreds of concurrent requests through ONE account: no lock, no "database is locked".

300 SendText in one ActionBatch to one chat (flood limits off on this module's server): every
result is ok, the user got all 300, the library had more than one request in flight at once
(`max_in_flight` counts overlapping calls inside the client), every call was made from the one
thread that owns the client (no concurrent callers), and the backend created exactly one client
object for its session. The measured rate is printed (run with -s to see it).
"""
from __future__ import annotations

import time

import pytest

from messages.telegram import SendText

from .conftest import backend_args, tg_unlimited

N = 300
tg = tg_unlimited  # flood limits off


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_hundreds_in_flight_through_one_account(fleet, tg, tmp_path, library):
    ctl = tg.control
    bot = ctl.create_account("bot", provision_key=False)
    user = ctl.create_account("user")
    group = fleet.group(backend_args(tg, bot, library, tmp_path, max_in_flight=128))
    first = ctl.send_as(user["user_id"], bot["user_id"], "start")   # the bot learns the user
    group.wait_collect(lambda c: c.updates, what="the first message")
    items = [(f"a{i}", SendText(chat_id=user["user_id"], text=f"n{i}")) for i in range(N)]
    started = time.monotonic()
    group.act(*items)
    results = group.results([i for i, _ in items], timeout=60)
    elapsed = time.monotonic() - started
    errors = [r for r in results.values() if not r.ok]
    assert not errors, errors[:3]
    assert not any("database is locked" in r.error for r in results.values())
    assert len({r.message_ids[0] for r in results.values()}) == N
    got = ctl.received(user["user_id"], since_id=first["id"], limit=1000)
    assert sorted(m["text"] for m in got) == sorted(f"n{i}" for i in range(N))
    stats = group.stats()
    assert stats["max_in_flight"] > 1, stats          # the calls overlapped inside the client
    assert stats["clients_created"] == 1 and stats["requests"] == N
    # ... and every call came from the one loop thread that owns the client: no concurrent
    # callers into it, so nothing to lock
    assert stats["caller_threads"] == 1, stats
    print(f"\n{library} {fleet.base}: {N} sends through one account in {elapsed:.2f}s "
          f"({N / elapsed:.0f}/s), max {stats['max_in_flight']} in flight in the client")

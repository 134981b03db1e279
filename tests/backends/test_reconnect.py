"""Reconnects: the local Telegram is stopped and started again on the same port and data
directory (its world, auth keys and pts survive). The library reconnects by itself (or the
backend's backoff loop does), the backend counts it, reports connected -> disconnected ->
connected to the bot, and catches up through GetDifference: a message sent while it was
reconnecting arrives."""
from __future__ import annotations

import contextlib

import pytest

from messages.telegram import SendText
from system.localtg.clients import register_rsa_key

from .conftest import backend_args, local_telegram


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_reconnect_after_server_restart(inprocess_fleet, tmp_path_factory, tmp_path, library):
    fleet = inprocess_fleet
    with contextlib.ExitStack() as stack:
        base = tmp_path_factory.mktemp("restartable")
        first = stack.enter_context(local_telegram_at(base))
        register_rsa_key(first.rsa_public_key)
        bot = first.control.create_account("bot", provision_key=False)
        user = first.control.create_account("user")
        group = fleet.group(backend_args(first, bot, library, tmp_path))
        first.control.send_as(user["user_id"], bot["user_id"], "before")
        group.wait_collect(lambda c: any(u.text == "before" for u in c.updates), what="before")
        port = first.port
        stack.close()                                   # the server goes away

        group.wait_collect(lambda c: not c.states[-1].connected, what="disconnected state")
        second = stack.enter_context(local_telegram_at(base, port=port))
        second.control.send_as(user["user_id"], bot["user_id"], "while reconnecting")
        got = group.wait_collect(lambda c: any(u.text == "while reconnecting"
                                               for u in c.updates), timeout=30,
                                 what="message sent while reconnecting")
        assert got.states[-1].connected and got.states[-1].login_state == "ready"
        stats = group.stats()
        assert stats["reconnects"] >= 1 and stats["clients_created"] == 1, stats
        assert second.control.stats()["rpc_counts"].get("GetDifferenceRequest", 0) >= 1
        msg = [u for u in got.updates if u.text == "while reconnecting"][0]
        group.act(("r", SendText(chat_id=msg.chat_id, text="back", reply_to=msg.message_id)))
        assert group.results(["r"])["r"].ok
        assert group.status()["backend"].restarts == 0


@contextlib.contextmanager
def local_telegram_at(base, port: int = 0):
    from system.localtg.testing import run_local_telegram
    with run_local_telegram(base, flood_limits=False, port=port) as server:
        yield server

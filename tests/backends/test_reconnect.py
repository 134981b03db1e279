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

from .conftest import backend_args


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


@pytest.mark.parametrize("library", ["telethon", "pyrogram"])
def test_circuit_opens_while_telegram_is_gone_and_closes_after(inprocess_fleet,
                                                               tmp_path_factory, tmp_path,
                                                               library):
    """With the server gone, actions fail (network/timeout) until the breaker opens; then they
    fail fast with 'circuit open' while reconnect attempts run with backoff; once the server
    is back, a reconnect closes the circuit and actions succeed again."""
    fleet = inprocess_fleet
    with contextlib.ExitStack() as stack:
        base = tmp_path_factory.mktemp("breaker")
        first = stack.enter_context(local_telegram_at(base))
        register_rsa_key(first.rsa_public_key)
        bot = first.control.create_account("bot", provision_key=False)
        user = first.control.create_account("user")
        group = fleet.group(backend_args(first, bot, library, tmp_path, action_timeout_s=1.0,
                                         breaker_threshold=3, breaker_reset_s=0.5,
                                         reconnect_base_s=0.2, reconnect_max_s=1.0,
                                         health_interval_s=0.5))
        first.control.send_as(user["user_id"], bot["user_id"], "hi")
        group.wait_collect(lambda c: c.updates, what="first message")
        port = first.port
        stack.close()

        failed = [(f"down{i}", SendText(chat_id=user["user_id"], text=f"lost {i}"))
                  for i in range(3)]
        group.act(*failed)
        res = group.results([i for i, _ in failed])
        assert all(r.error_kind in ("network", "timeout") for r in res.values()), res
        fast = [(f"fast{i}", SendText(chat_id=user["user_id"], text="x")) for i in range(3)]
        group.act(*fast)
        res = group.results([i for i, _ in fast])
        assert any("circuit open" in r.error and r.error_kind == "network"
                   for r in res.values()), res
        fleet.poll(lambda: group.stats()["reconnect_attempts"] >= 2, 20,
                   "reconnect attempts while the server is gone")

        second = stack.enter_context(local_telegram_at(base, port=port))
        n = iter(range(1000))

        def delivered():
            aid = f"again{next(n)}"
            group.act((aid, SendText(chat_id=user["user_id"], text="back")))
            return group.results([aid])[aid].ok
        fleet.poll(delivered, 30, "an action delivered after the server came back")
        # A health check that timed out while the server was gone may still land after that
        # delivery and open the circuit once more; the next health check closes it again.
        fleet.poll(lambda: group.stats()["circuit"] == "closed", 15,
                   "the circuit closed after the server came back")
        assert any(m["text"] == "back" for m in second.control.received(user["user_id"]))

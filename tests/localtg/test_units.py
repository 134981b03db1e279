"""Small deterministic checks of pieces that do not need a server process."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from telethon import connection as tconn

from system.localtg.clients import telethon_client
from system.localtg.flood import FloodConfig, FloodLimiter
from system.localtg.testing import REPO_ROOT

from .conftest import run


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_flood_per_chat_burst_then_one_per_second():
    clock = FakeClock()
    f = FloodLimiter(FloodConfig(), clock=clock)
    assert [f.check_send(1, ("user", 5), False) for _ in range(3)] == [None, None, None]
    assert f.check_send(1, ("user", 5), False) == 1
    assert f.check_send(1, ("user", 6), False) is None  # another chat has its own bucket
    clock.t += 1.0
    assert f.check_send(1, ("user", 5), False) is None
    assert f.stats.total == 1 and f.stats.by_account == {1: 1} and f.stats.by_kind == {"chat": 1}


def test_flood_overall_per_bot_limit():
    clock = FakeClock()
    f = FloodLimiter(FloodConfig(chat_burst=100, chat_per_second=100), clock=clock)
    results = [f.check_send(7, ("user", i), False) for i in range(31)]
    assert results[:30] == [None] * 30 and results[30] == 1
    assert f.stats.by_kind == {"bot": 1}


def test_flood_group_limit_is_20_per_minute_with_realistic_wait():
    clock = FakeClock()
    f = FloodLimiter(FloodConfig(chat_burst=100, chat_per_second=100), clock=clock)
    for _ in range(20):
        assert f.check_send(3, ("chat", 9), True) is None
        clock.t += 0.01
    wait = f.check_send(3, ("chat", 9), True)
    assert 1 <= wait <= 3  # next token in ~3 s at 20/min
    clock.t += 3.0
    assert f.check_send(3, ("chat", 9), True) is None


def test_flood_limits_off():
    f = FloodLimiter(FloodConfig(enabled=False), clock=FakeClock())
    assert all(f.check_send(1, ("user", 1), False) is None for _ in range(1000))


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "system.localtg", "--help"], cwd=str(REPO_ROOT),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--data-dir" in out.stdout and "--no-flood-limits" in out.stdout


@pytest.mark.parametrize("conn_cls", [tconn.ConnectionTcpFull, tconn.ConnectionTcpIntermediate,
                                      tconn.ConnectionTcpAbridged, tconn.ConnectionTcpObfuscated])
def test_every_plain_transport_works_with_telethon(tg, ctl, conn_cls):
    bot = ctl.create_account("bot")
    user = ctl.create_account("user")

    async def main():
        c = telethon_client(bot, tg.host, tg.port, connection=conn_cls)
        await c.start()
        await c.send_message(user["user_id"], conn_cls.__name__)
        await c.disconnect()

    run(main())
    assert ctl.received(user["user_id"])[-1]["text"] == conn_cls.__name__

"""Fixtures for the local Telegram tests: one server subprocess per test module.

Each test creates its own accounts and chats through the control surface, so tests in a
module do not depend on each other. Clients are real Telethon / Pyrogram over real TCP.
"""
from __future__ import annotations

import asyncio
import logging

import pytest

from system.localtg.clients import register_rsa_key
from system.localtg.testing import run_local_telegram

logging.getLogger("telethon").setLevel(logging.WARNING)
logging.getLogger("pyrogram").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def tg(tmp_path_factory):
    """A running local Telegram (flood limits on, no delay) for the whole module."""
    with run_local_telegram(tmp_path_factory.mktemp("localtg")) as server:
        register_rsa_key(server.rsa_public_key)
        yield server
        assert server.proc.poll() is None, "the server died during the tests"


@pytest.fixture
def ctl(tg):
    return tg.control


def run(coro, timeout: float = 60.0):
    """Run a coroutine on a fresh event loop (clients must be created inside it)."""
    async def guarded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(guarded())


async def next_item(queue: asyncio.Queue, timeout: float = 10.0):
    return await asyncio.wait_for(queue.get(), timeout)


async def wait_until(pred, timeout: float = 10.0, interval: float = 0.02):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        value = pred()
        if value:
            return value
        await asyncio.sleep(interval)
    raise TimeoutError("condition not met within %.1fs" % timeout)

"""Baseline (a): N Telethon echo bots in one asyncio process, every Telethon call under ONE
global asyncio.Lock — the pattern of /work/shared/seeds/telethon-serialization.md, as written.

Why: this is how many multi-bot services are written today ("never run concurrent Telethon
actions; always use a global lock"). The benchmark runs it with the same clients, the same
handler work and the same client settings as tgfleet, so the difference it shows is the design.

    python -m bench.baseline_telethon_lock --accounts ACCOUNTS.json --bots user1_bot,user2_bot
        [--host 127.0.0.1 --port 12345] [--provisioned] [--session-dir DIR]

ACCOUNTS.json: the local Telegram's accounts.json ({"accounts": [...], "rsa_public_key": ...})
or a plain list of account entries. Each bot logs in the way a real deployment does: a real key
exchange against the server's RSA key, then its bot token (`--provisioned` uses the pre-shared
auth key instead). Prints "ready" when every client is started; runs until SIGTERM/SIGINT, then
disconnects every client (under the lock, too) and exits 0.

Client settings (identical to tgfleet's Telethon backend, actors/backends/telethon_backend.py):
cryptg installed, an in-memory session (StringSession; --session-dir: a SQLite file per bot),
flood_sleep_threshold=0, catch_up=True, request_retries=1, connection_retries=3, retry_delay=1,
parse_mode=None, link_preview=False, Telethon's default concurrent update dispatch. Handler:
answer a private text message with the same text as a reply to it (tgfleet's EchoHandler).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from telethon import events

from bench.baseline_common import load_accounts, pick_bots, server_address
from system.localtg.clients import register_rsa_key, telethon_client, telethon_start

# The seed note: "In your telethon_client.py ...: telethon_lock = asyncio.Lock()" and
# "Apply this lock to ALL public methods that interact with Telethon's client/session".
telethon_lock = asyncio.Lock()

log = logging.getLogger("baseline.telethon_lock")


def make_client(account: dict, host: str, port: int, provisioned: bool, session_dir: str | None):
    session = None
    if session_dir:
        os.makedirs(session_dir, exist_ok=True)
        session = os.path.join(session_dir, "bot%d" % account["user_id"])
    client = telethon_client(account, host, port, provisioned=provisioned, session=session,
                             flood_sleep_threshold=0, catch_up=True, request_retries=1,
                             connection_retries=3, retry_delay=1)
    client.parse_mode = None

    @client.on(events.NewMessage(incoming=True))
    async def echo(event):
        # Same work as tgfleet's EchoHandler: private text messages only, answer = same text,
        # as a reply to the incoming message.
        if not event.is_private or not event.raw_text:
            return
        async with telethon_lock:
            await client.send_message(event.chat_id, event.raw_text, reply_to=event.id,
                                      link_preview=False)

    return client


async def start_one(client, account: dict) -> None:
    async with telethon_lock:
        await telethon_start(client, account)


async def main_async(args) -> int:
    doc = load_accounts(args.accounts)
    bots = pick_bots(doc, args.bots)
    if not args.provisioned and doc.get("rsa_public_key"):
        register_rsa_key(doc["rsa_public_key"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    clients = []
    for acc in bots:
        host, port = server_address(acc, args.host, args.port)
        clients.append(make_client(acc, host, port, args.provisioned, args.session_dir))
    try:
        await asyncio.gather(*(start_one(c, a) for c, a in zip(clients, bots)))
        print("ready", flush=True)
        await stop.wait()
    finally:
        # Disconnect under the lock as well; with thousands of handlers queued on it, give up
        # after a few seconds (the process is exiting anyway).
        async def disconnect_all():
            for c in clients:
                async with telethon_lock:
                    await c.disconnect()
        try:
            await asyncio.wait_for(disconnect_all(), 5.0)
        except asyncio.TimeoutError:
            log.warning("disconnect took over 5 s (handlers queued on the lock); exiting")
    print("stopped", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_telethon_lock",
                                description="baseline (a): Telethon echo bots behind a global lock")
    p.add_argument("--accounts", required=True, help="accounts JSON file (localtg format)")
    p.add_argument("--bots", required=True, help="comma-separated bot usernames (or user ids)")
    p.add_argument("--host", default=None, help="MTProto host (default: from the account entry)")
    p.add_argument("--port", type=int, default=None, help="MTProto port (default: from the account)")
    p.add_argument("--provisioned", action="store_true",
                   help="use the pre-shared auth keys instead of key exchange + token login")
    p.add_argument("--session-dir", default=None, help="SQLite session files here (default: memory)")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

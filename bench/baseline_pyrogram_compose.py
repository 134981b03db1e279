"""Baseline (b): N Pyrogram (kurigram) echo bots run with `pyrogram.compose()` in one process —
the documented way to run several Pyrogram clients at once.

Why: the other common way people run a multi-bot fleet today. Same clients, same handler work and
the same client settings as tgfleet's Pyrogram backend, so the comparison is about the design.

    python -m bench.baseline_pyrogram_compose --accounts ACCOUNTS.json --bots user1_bot,user2_bot
        [--host 127.0.0.1 --port 12345] [--provisioned] [--session-dir DIR]

ACCOUNTS.json: the local Telegram's accounts.json or a plain list of account entries. Each bot
logs in with a real key exchange and its bot token (`--provisioned`: the pre-shared auth key).
Prints "ready" when every client is started; `compose()` runs until SIGTERM/SIGINT (its
`idle()`), then stops every client; exit 0.

Client settings (identical to tgfleet's Pyrogram backend, actors/backends/pyrogram_backend.py):
tgcrypto installed, in-memory session (--session-dir: a session file per bot), sleep_threshold=0,
skip_updates=False (catch-up), parse_mode=DISABLED, max_message_cache_size=100,
fetch_replies/fetch_topics/fetch_stories=False, the library's default workers, no link preview.
Handler: answer a private text message with the same text, as a reply to it.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pyrogram import compose, enums, filters, types
from pyrogram.handlers import MessageHandler

from bench.baseline_common import load_accounts, pick_bots, server_address
from system.localtg.clients import pyrogram_client, register_rsa_key

log = logging.getLogger("baseline.pyrogram_compose")


async def echo(client, message):
    # Same work as tgfleet's EchoHandler: private text only, same text, as a reply.
    await client.send_message(message.chat.id, message.text, parse_mode=enums.ParseMode.DISABLED,
                              reply_parameters=types.ReplyParameters(message_id=message.id),
                              link_preview_options=_NO_PREVIEW)


_NO_PREVIEW = types.LinkPreviewOptions(is_disabled=True)


async def announce_ready(apps) -> None:
    while not all(getattr(a, "is_initialized", False) for a in apps):
        await asyncio.sleep(0.01)
    print("ready", flush=True)


async def main_async(args) -> int:
    doc = load_accounts(args.accounts)
    bots = pick_bots(doc, args.bots)
    if not args.provisioned and doc.get("rsa_public_key"):
        register_rsa_key(doc["rsa_public_key"])
    apps = []
    for acc in bots:
        host, port = server_address(acc, args.host, args.port)
        kw = {"sleep_threshold": 0, "skip_updates": False, "parse_mode": enums.ParseMode.DISABLED,
              "max_message_cache_size": args.max_message_cache_size,
              "fetch_replies": False, "fetch_topics": False, "fetch_stories": False}
        app = pyrogram_client(acc, host, port, workdir=args.session_dir, provisioned=args.provisioned,
                              name="bot%d" % acc["user_id"], **kw)
        app.add_handler(MessageHandler(echo, filters.private & filters.text & filters.incoming))
        apps.append(app)
    watcher = asyncio.get_running_loop().create_task(announce_ready(apps))
    try:
        await compose(apps)
    finally:
        watcher.cancel()
    print("stopped", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_pyrogram_compose",
                                description="baseline (b): Pyrogram echo bots under compose()")
    p.add_argument("--accounts", required=True, help="accounts JSON file (localtg format)")
    p.add_argument("--bots", required=True, help="comma-separated bot usernames (or user ids)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--provisioned", action="store_true",
                   help="use the pre-shared auth keys instead of key exchange + token login")
    p.add_argument("--session-dir", default=None, help="session files here (default: memory)")
    p.add_argument("--max-message-cache-size", type=int, default=100,
                   help="pyrogram's message cache size (default 100, as tgfleet's backend)")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

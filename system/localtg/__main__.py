"""`python -m system.localtg`: run the local Telegram standalone.

Once listening it writes DIR/accounts.json and DIR/ready.json ({"host","port",
"control_port","pid"}), each atomically, so a parent process can wait for ready.json.
SIGTERM or SIGINT stops it cleanly (final commit) with exit status 0.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from .accounts_file import write_json_atomic
from .server import LocalTelegram

log = logging.getLogger("system.localtg")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m system.localtg",
                                description="A local MTProto 2.0 Telegram on 127.0.0.1 for tests, benchmarks and demos.")
    p.add_argument("--data-dir", required=True, help="state directory (SQLite world, RSA key, files, accounts.json)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback only unless --allow-remote)")
    p.add_argument("--port", type=int, default=0, help="MTProto port, 0 = pick a free one")
    p.add_argument("--control-port", type=int, default=0, help="HTTP/JSON control port, 0 = pick a free one")
    p.add_argument("--no-flood-limits", action="store_true", help="do not enforce Telegram's bot flood limits")
    p.add_argument("--bot-per-second", type=float, default=30.0)
    p.add_argument("--chat-per-second", type=float, default=1.0)
    p.add_argument("--chat-burst", type=float, default=3.0)
    p.add_argument("--group-per-minute", type=float, default=20.0)
    p.add_argument("--delay-ms", type=float, default=0.0, help="simulated round-trip delay added to every exchange")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="+- jitter on the delay (packets stay in order)")
    p.add_argument("--bots", type=int, default=0, help="ensure at least N bot accounts exist (provisioned keys)")
    p.add_argument("--users", type=int, default=0, help="ensure at least N user accounts exist (provisioned keys)")
    p.add_argument("--seed-demo", action="store_true", help="also create a demo group and channel with every account")
    p.add_argument("--rsa-key-file", default=None, help="reuse this PKCS#1 private key instead of DIR/rsa_private.pem")
    p.add_argument("--allow-remote", action="store_true", help="permit a non-loopback --host (see README: insecure)")
    p.add_argument("--log-level", default=os.environ.get("LOCALTG_LOG", "INFO"))
    return p.parse_args(argv)


def seed(tg: LocalTelegram, bots: int, users: int, demo: bool) -> None:
    w = tg.world
    have_bots = [a for a in w.accounts.values() if a.is_bot]
    have_users = [a for a in w.accounts.values() if not a.is_bot and not a.simulated]
    for _ in range(max(0, bots - len(have_bots))):
        have_bots.append(w.create_account("bot", provision_key=True))
    for _ in range(max(0, users - len(have_users))):
        have_users.append(w.create_account("user", provision_key=True))
    if demo and not any(c.title == "Demo group" for c in w.chats.values()):
        ids = [a.user_id for a in have_bots + have_users]
        admins = [a.user_id for a in have_bots]
        if ids:
            w.create_chat("group", "Demo group", ids, admins)
            w.create_chat("channel", "Demo channel", ids, admins, username="demo_channel")


async def amain(args) -> int:
    tg = LocalTelegram(args.data_dir, host=args.host, port=args.port, control_port=args.control_port,
                       flood_limits=not args.no_flood_limits, delay_ms=args.delay_ms, jitter_ms=args.jitter_ms,
                       bot_per_second=args.bot_per_second, chat_per_second=args.chat_per_second,
                       chat_burst=args.chat_burst, group_per_minute=args.group_per_minute,
                       rsa_key_file=args.rsa_key_file, allow_remote=args.allow_remote)
    await tg.start()
    seed(tg, args.bots, args.users, args.seed_demo)
    tg.store.flush()
    tg.write_accounts_file()
    write_json_atomic(os.path.join(tg.data_dir, "ready.json"), tg.ready_info())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received, stopping")
    await tg.stop()
    try:
        os.unlink(os.path.join(tg.data_dir, "ready.json"))
    except FileNotFoundError:
        pass
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())

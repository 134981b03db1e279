"""How many messages per second the local Telegram routes between 10 bots and a crowd.

Run: python -m bench.localtg_throughput [--bots 10] [--users 50] [--rates 300,1000,2000]
     [--seconds 8] [--out bench/results/localtg.json]

Setup: the local Telegram runs as its own process (flood limits off, no delay). Ten real
Telethon bot clients run in this process and answer every message with "echo <text>". The
server's crowd makes simulated users send to the bots at each offered rate in turn. A
message is "routed" when the server accepts it into the world and delivers it: the crowd's
messages to the bots plus the bots' answers. For each rate we report routed messages/s,
answers/s, answer latency, the server's CPU use (share of one core) and its RSS.

Why the CPU share matters: on a 2-core machine the ten Telethon clients in one process are
the first thing to saturate (~0.5 ms of client CPU per echo). The server's capacity is
therefore estimated as routed messages per second of *server CPU* ("capacity_per_core"):
the rate it could route if it had a whole core to itself. The target is >= 1,500 routed/s,
5x the 300 msg/s a 10-bot fleet may send under Telegram's own limits.

This is a benchmark, not a test: it prints a table and writes JSON; it asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time

from telethon import events

from system.localtg.clients import telethon_client
from system.localtg.testing import run_local_telegram

TARGET_ROUTED_PER_S = 1500


async def run_bench(tg, n_bots: int, users: int, rates, seconds: float) -> dict:
    ctl = tg.control
    bots = [ctl.create_account("bot", first_name="Bench bot %d" % i) for i in range(n_bots)]
    clients = []
    for b in bots:
        c = telethon_client(b, tg.host, tg.port, flood_sleep_threshold=0)

        @c.on(events.NewMessage(incoming=True))
        async def echo(ev, _c=c):
            await _c.send_message(ev.chat_id, "echo " + ev.raw_text)

        clients.append(c)
    await asyncio.gather(*(c.start() for c in clients))
    bot_ids = [b["user_id"] for b in bots]
    # Warm-up: creates the crowd users, fills entity caches on both sides.
    ctl.crowd_start(bot_ids, users=users, rate_per_s=200, duration_s=2)
    await asyncio.sleep(3)
    ctl.crowd_stop()
    rows = []
    for rate in rates:
        s0 = ctl.stats()
        t0 = time.monotonic()
        ctl.crowd_start(bot_ids, users=users, rate_per_s=rate, duration_s=seconds)
        await asyncio.sleep(seconds)
        s1 = ctl.stats()
        t1 = time.monotonic()
        # Let the bots drain what is queued, then read the crowd's verdict.
        drain_end = time.monotonic() + 10
        while time.monotonic() < drain_end:
            cs = ctl.crowd_stats()
            if cs["answered"] >= cs["sent"]:
                break
            await asyncio.sleep(0.2)
        cs = ctl.crowd_stop()
        wall = t1 - t0
        routed = s1["messages_routed"] - s0["messages_routed"]
        cpu = s1["cpu_seconds"] - s0["cpu_seconds"]
        row = {
            "offered_rate": rate,
            "seconds": round(wall, 2),
            "routed_per_s": round(routed / wall, 1),
            "crowd_sent": cs["sent"],
            "answered": cs["answered"],
            "answered_per_s": round(cs["answered"] / max(cs["elapsed_s"], wall), 1),
            "unanswered": cs["unanswered"],
            "duplicates": cs["duplicates"],
            "latency_ms": {k: (round(v, 1) if v is not None else None) for k, v in cs["latency_ms"].items()},
            "server_cpu_share": round(cpu / wall, 3),
            "capacity_per_core": round(routed / cpu, 1) if cpu > 0 else None,
            "server_rss_mb": round(s1["rss_bytes"] / 1e6, 1),
        }
        rows.append(row)
        print_row(row)
    await asyncio.gather(*(c.disconnect() for c in clients))
    return {"rows": rows, "final_stats": {k: v for k, v in ctl.stats().items() if k != "rpc_counts"}}


HEADER = "%8s %10s %10s %9s %8s %8s %8s %8s %10s %8s" % (
    "offered", "routed/s", "answer/s", "unanswer", "p50 ms", "p99 ms", "srv cpu", "rss MB", "cap/core", "dups")


def print_row(r):
    lat = r["latency_ms"]
    print("%8d %10.1f %10.1f %9d %8s %8s %7.0f%% %8.1f %10s %8d" % (
        r["offered_rate"], r["routed_per_s"], r["answered_per_s"], r["unanswered"], lat["p50"], lat["p99"],
        100 * r["server_cpu_share"], r["server_rss_mb"], r["capacity_per_core"], r["duplicates"]), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.localtg_throughput")
    p.add_argument("--bots", type=int, default=10)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--rates", default="300,800,1500,2500")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--out", default=os.path.join("bench", "results", "localtg.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rates = [float(x) for x in args.rates.split(",")]
    print("local Telegram throughput: %d telethon echo bots, %d crowd users, flood limits off" % (args.bots, args.users))
    print(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        with run_local_telegram(tmp, flood_limits=False, log_level="WARNING") as tg:
            result = asyncio.run(run_bench(tg, args.bots, args.users, rates, args.seconds))
            pid = tg.pid
    best = max(r["routed_per_s"] for r in result["rows"])
    cap = max((r["capacity_per_core"] or 0) for r in result["rows"])
    peak_rss = max(r["server_rss_mb"] for r in result["rows"])
    summary = {
        "benchmark": "localtg_throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "bots": args.bots, "users": args.users, "seconds_per_rate": args.seconds,
        "best_routed_per_s": best,
        "server_capacity_per_core": cap,
        "server_peak_rss_mb": peak_rss,
        "target_routed_per_s": TARGET_ROUTED_PER_S,
        "server_pid": pid,
        **result,
    }
    print("best routed: %.0f msg/s; server capacity at one full core: %.0f msg/s (target %d); server RSS %.1f MB"
          % (best, cap, TARGET_ROUTED_PER_S, peak_rss))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

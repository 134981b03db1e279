"""StoreActor write benchmark: latency and throughput with group commit.

    python -m bench.store_bench [--quick] [--bases inprocess,processes] [--out PATH]

For each base and each `synchronous` setting (FULL: every COMMIT fsyncs the WAL; NORMAL: fsync
only at checkpoints) a fresh StoreActor on a fresh database file gets:
- serial:   one writer that waits for each ACK before the next write (no batching possible);
- window N: a writer that keeps N writes in flight (ACKs are collected as they come), so
            writes that arrive during a commit share the next transaction (group commit).
            N = 8 and 64 by default (--windows).
Writes are KvSet with a ~100-byte value. Client latency is tell -> ACK received by the
benchmark; store latency is the store's own record (request received -> COMMIT returned, from
StoreStats). Results: a table on stdout, JSON in bench/results/store.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import sys
import tempfile
import time

from thespian.actors import ActorExitRequest

from messages.lifecycle import Start, Started
from messages.store import KvSet, StoreReply, StoreStats
from system.boot import FleetSystem

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "store.json")


def pct(values, p):
    vals = sorted(values)
    if not vals:
        return 0.0
    return vals[min(len(vals) - 1, max(0, math.ceil(p / 100 * len(vals)) - 1))]


def start_store(fs, path, synchronous):
    addr = fs.create("actors.store.StoreActor")
    reply = fs.ask(addr, Start("store", {"path": path, "synchronous": synchronous}, {},
                               "bench/store"), 20)
    if not isinstance(reply, Started):
        raise RuntimeError(f"store did not start: {reply!r}")
    return addr


def stop_store(fs, addr, path):
    fs.tell(addr, ActorExitRequest())
    fs.wait_for(lambda: not os.path.exists(path + "-wal"), 10)


def value(i):
    return {"n": i, "text": "x" * 80}


def run_serial(fs, addr, n):
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        reply = fs.ask(addr, KvSet(f"s{i}", f"serial{i % 500}", value(i)), 10)
        if not (isinstance(reply, StoreReply) and reply.ok):
            raise RuntimeError(f"write {i} failed: {reply!r}")
        lat.append(time.perf_counter() - t)
    return lat, time.perf_counter() - t0


def run_window(fs, addr, n, window):
    sent_at: dict[str, float] = {}
    lat = []
    nxt = 0
    t0 = time.perf_counter()
    while len(lat) < n:
        while nxt < n and len(sent_at) < window:
            rid = f"w{nxt}"
            sent_at[rid] = time.perf_counter()
            fs.tell(addr, KvSet(rid, f"window{nxt % 500}", value(nxt)))
            nxt += 1
        msg = fs.listen(10)
        if msg is None:
            raise RuntimeError(f"no reply within 10 s ({len(lat)}/{n} acked)")
        if isinstance(msg, StoreReply):
            if not msg.ok:
                raise RuntimeError(f"write failed: {msg.error}")
            lat.append(time.perf_counter() - sent_at.pop(msg.request_id))
    return lat, time.perf_counter() - t0


def bench_base(base, syncs, n_serial, n_window, windows, workdir):
    rows = []
    fs = FleetSystem(base)
    try:
        for sync in syncs:
            for window in [1] + windows:
                scenario = "serial" if window == 1 else "window"
                path = os.path.join(workdir, f"{base}-{sync}-{window}.db")
                addr = start_store(fs, path, sync)
                if scenario == "serial":
                    lat, elapsed = run_serial(fs, addr, n_serial)
                else:
                    lat, elapsed = run_window(fs, addr, n_window, window)
                stats = fs.ask(addr, StoreStats("stats"), 10).value
                stop_store(fs, addr, path)
                writes = stats["writes"]
                rows.append({
                    "base": base, "synchronous": sync, "scenario": scenario,
                    "window": window,
                    "writes": len(lat), "seconds": round(elapsed, 3),
                    "writes_per_s": round(len(lat) / elapsed, 1),
                    "client_p50_ms": round(pct(lat, 50) * 1000, 3),
                    "client_p99_ms": round(pct(lat, 99) * 1000, 3),
                    "store_p50_ms": stats["write_latency_ms"]["p50"],
                    "store_p99_ms": stats["write_latency_ms"]["p99"],
                    "commit_p50_ms": stats["commit_ms"]["p50"],
                    "commits": stats["commits"],
                    "writes_per_commit": round(writes / max(1, stats["commits"]), 2),
                    "max_batch": stats["max_batch"],
                })
                print_row(rows[-1])
    finally:
        fs.shutdown()
    return rows


COLUMNS = [("base", 10), ("synchronous", 6), ("scenario", 8), ("window", 6), ("writes", 6),
           ("writes_per_s", 9), ("client_p50_ms", 9), ("client_p99_ms", 9),
           ("store_p50_ms", 9), ("store_p99_ms", 9), ("commit_p50_ms", 9),
           ("writes_per_commit", 9)]
HEAD = ["base", "sync", "scenario", "window", "writes", "writes/s", "cli p50", "cli p99",
        "st p50", "st p99", "commit50", "w/commit"]


def print_header():
    print("  ".join(h.rjust(w) for h, (_, w) in zip(HEAD, COLUMNS)))
    print("  ".join("-" * w for _, w in COLUMNS))


def print_row(row):
    print("  ".join(str(row[k]).rjust(w) for k, w in COLUMNS), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer writes (a smoke run)")
    ap.add_argument("--bases", default="inprocess,processes")
    ap.add_argument("--sync", default="FULL,NORMAL")
    ap.add_argument("--windows", default="8,64", help="writes in flight, comma-separated")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    n_serial, n_window = (100, 500) if args.quick else (1000, 5000)
    bases = [b for b in args.bases.split(",") if b]
    syncs = [s.upper() for s in args.sync.split(",") if s]
    print(f"StoreActor write benchmark: {n_serial} serial + {n_window} windowed writes "
          f"per case, ms")
    print_header()
    rows = []
    with tempfile.TemporaryDirectory(prefix="store-bench-") as workdir:
        for base in bases:
            rows += bench_base(base, syncs, n_serial, n_window,
                               [int(w) for w in args.windows.split(",") if w], workdir)
    result = {
        "benchmark": "store", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "cpus": os.cpu_count(), "platform": platform.platform()},
        "notes": "client = tell -> ACK at the benchmark; store = request received -> COMMIT "
                 "returned (StoreStats); window = writes kept in flight",
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

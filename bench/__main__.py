"""`ops/bench`: tgfleet against the ways people write multi-bot services today, on this machine.

    ops/bench [--repeat 3] [--quick] [--only NAME[,NAME...]] [--bots 10,50] [--delays 0,50] ...

Workloads (NAME for --only; "echo" = the four echo systems, "tgfleet" = everything tgfleet):
  baseline-a         echo fleet, one process, N Telethon clients, one global asyncio.Lock
  baseline-b         echo fleet, Pyrogram compose() with N clients
  tgfleet-inprocess  echo fleet, tgfleet with every actor in one process
  tgfleet-processes  echo fleet, tgfleet with one process per actor
  recovery           tgfleet processes: SIGKILL a backend under load; time to answer again; lost
  fidelity           tgfleet, server flood limits on, 10 bots flooded: FLOOD_WAITs, % of allowed
Every echo workload runs for each bot count (--bots) and each round trip (--delays, ms, set on the
local Telegram). Each run gets a fresh local Telegram and a freshly started system. Numbers are
medians over --repeat runs. Output: a table on stdout; JSON in bench/results/bench-<time>.json
and bench/results/latest.json (--out-dir). See bench/workloads.py for what each number means.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import harness, ksm, report
from bench.sut import SYSTEMS, skip_reason
from bench.workloads import RunError, echo_run, fidelity_run, recovery_run

log = logging.getLogger("bench")
WORKLOADS = SYSTEMS + ("recovery", "fidelity")
ALIASES = {"echo": SYSTEMS, "baselines": ("baseline-a", "baseline-b"),
           "tgfleet": ("tgfleet-inprocess", "tgfleet-processes", "recovery", "fidelity")}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="ops/bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[4:]))
    p.add_argument("--repeat", type=int, default=None, help="runs per workload (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="short smoke run (~4 min here): 10 bots only, 1 repeat, short phases, 15 s fidelity")
    p.add_argument("--only", default="", help="comma-separated workloads: " + ", ".join(WORKLOADS)
                   + " (aliases: " + ", ".join(ALIASES) + ")")
    p.add_argument("--bots", default=None, help="bot counts for the echo fleet (default 10,50; --quick 10)")
    p.add_argument("--delays", default="0,50", help="round trips in ms (default 0,50)")
    p.add_argument("--rate", type=float, default=4000.0,
                   help="top of the offered-rate ladder, msg/s (default 4000: above every system here)")
    p.add_argument("--ladder-start", type=float, default=250.0,
                   help="first rate above light load; the ladder doubles from here (default 250)")
    p.add_argument("--users", type=int, default=50, help="simulated users in the crowd (default 50)")
    p.add_argument("--seconds", type=float, default=None,
                   help="measured window per ladder step (default 4; --quick 2)")
    p.add_argument("--warmup-seconds", type=float, default=None,
                   help="before each window (default 1; --quick 0.5)")
    p.add_argument("--light-seconds", type=float, default=None, help="light-load window (default 5; --quick 3)")
    p.add_argument("--light-samples", type=int, default=None,
                   help="the light-load window lasts at least long enough for this many messages "
                        "(default 200, so p99 is not just the slowest of a few dozen; 0 with "
                        "--quick or an explicit --light-seconds)")
    p.add_argument("--light-rate-per-bot", type=float, default=1.0,
                   help="light-load msg/s per bot for p50/p99 (default 1)")
    p.add_argument("--fidelity-seconds", type=float, default=None, help="default 60; --quick 15")
    p.add_argument("--fidelity-users", type=int, default=30,
                   help="crowd users flooding the fidelity bots (default 30: both limits bind)")
    p.add_argument("--fidelity-rate", type=float, default=800.0, help="offered msg/s (default 800)")
    p.add_argument("--fidelity-base", choices=["inprocess", "processes"], default="inprocess")
    p.add_argument("--recovery-rate", type=float, default=50.0,
                   help="crowd msg/s over the 10 bots during recovery (default 50: load, not overload)")
    p.add_argument("--tgfleet-library", choices=["telethon", "pyrogram"], default="telethon",
                   help="client library of tgfleet's bots (default telethon, as baseline (a))")
    p.add_argument("--process-unit", choices=["config", "actor", "bot"], default="config",
                   help="tgfleet processes base: one process per actor or per bot (system."
                        "process_unit; default: what the config defaults to)")
    p.add_argument("--provisioned", action="store_true",
                   help="baselines use pre-shared auth keys (default: key exchange + token, as tgfleet)")
    p.add_argument("--ksm", choices=list(ksm.MODES), default="on",
                   help="kernel same-page merging for the processes base (bench/ksm.py): on = run "
                        "ksmd during the benchmark and put it back after (root; default), host = "
                        "leave ksmd as it is, off = the fleet does not ask for merging")
    p.add_argument("--ksm-pages", type=int, default=200,
                   help="ksmd pages per 20 ms during measurements with --ksm on (default 200)")
    p.add_argument("--out-dir", default=str(harness.REPO_ROOT / "bench" / "results"))
    p.add_argument("--workdir", default=None, help="run directories (logs, configs) here; kept")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary run directories")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    q = args.quick
    args.repeat = args.repeat or (1 if q else 3)
    args.bots = [int(x) for x in (args.bots or ("10" if q else "10,50")).split(",") if x.strip()]
    args.delays = [float(x) for x in args.delays.split(",") if x.strip()]
    args.seconds = args.seconds or (2.0 if q else 4.0)
    args.warmup_seconds = args.warmup_seconds if args.warmup_seconds is not None else (0.5 if q else 1.0)
    if args.light_samples is None:       # an explicit window is taken as given
        args.light_samples = 0 if (q or args.light_seconds) else 200
    args.light_seconds = args.light_seconds or (3.0 if q else 5.0)
    args.fidelity_seconds = args.fidelity_seconds or (15.0 if q else 60.0)
    chosen = []
    for name in [n.strip() for n in args.only.split(",") if n.strip()] or list(WORKLOADS):
        names = ALIASES.get(name, (name,))
        for n in names:
            if n not in WORKLOADS:
                p.error(f"--only: unknown workload {n!r}; known: {', '.join(WORKLOADS)}")
            if n not in chosen:
                chosen.append(n)
    args.only = chosen
    return args


def params(args) -> dict:
    q = args.quick
    return {
        "users": args.users, "rate": args.rate, "ladder_start": args.ladder_start,
        "light_rate_per_bot": args.light_rate_per_bot,
        "light_s": args.light_seconds, "light_samples": args.light_samples, "sat_warmup_s": args.warmup_seconds,
        "sat_window_s": args.seconds, "drain_s": 5.0 if q else 10.0,
        "startup_timeout_s": 60.0, "provisioned": args.provisioned,
        "recovery_bots": 10, "recovery_rate": args.recovery_rate,
        "recovery_load_s": 2.0 if q else 4.0, "recovery_after_s": 2.0 if q else 4.0,
        "recovery_timeout_s": 30.0,
        "fidelity_bots": 10, "fidelity_users": args.fidelity_users, "fidelity_rate": args.fidelity_rate,
        "fidelity_seconds": args.fidelity_seconds, "fidelity_warmup_s": 3.0,
        "fidelity_base": args.fidelity_base, "tgfleet_library": args.tgfleet_library,
        "process_unit": args.process_unit,
    }


def _guard(fn, label: str, *a) -> dict:
    """Run one workload run; an error is recorded (and the benchmark goes on), Ctrl-C is not."""
    t0 = time.monotonic()
    try:
        row = fn(*a)
    except KeyboardInterrupt:
        raise
    except RunError as exc:
        log.error("%s failed: %s", label, str(exc).splitlines()[0])
        row = {"error": str(exc)}
    except Exception as exc:   # one broken run must not lose the others' results
        log.error("%s failed:\n%s", label, traceback.format_exc())
        row = {"error": f"{type(exc).__name__}: {exc}"}
    row["elapsed_s"] = round(time.monotonic() - t0, 1)
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("telethon", "pyrogram"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    harness.install_signal_handlers()
    p = params(args)
    ksm.HOLD = ksm.Ksm(args.ksm, args.ksm_pages)
    base_dir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="tgfleet-bench-"))
    base_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "tgfleet",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": "ops/bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_start": os.getloadavg()},
        "git_commit": _git_commit(),
        "options": {"repeat": args.repeat, "quick": args.quick, "only": args.only, "bots": args.bots,
                    "delays_ms": args.delays, **p},
        "echo_runs": [], "recovery_runs": [], "fidelity_runs": [],
    }
    skips = {w: skip_reason(w if w.startswith(("baseline", "tgfleet")) else "tgfleet")
             for w in args.only}
    failed = False
    interrupted = False
    t_start = time.monotonic()
    try:
        result["ksm"] = ksm.HOLD.start()
        k = 0
        for rep in range(args.repeat):
            for n_bots in args.bots:
                for system in [s for s in SYSTEMS if s in args.only]:
                    for delay in args.delays:
                        k += 1
                        label = f"[{k}] {system} {n_bots} bots {delay:g} ms (repeat {rep + 1})"
                        if skips[system]:
                            row = {"skipped": skips[system]}
                        else:
                            log.info("%s ...", label)
                            row = _guard(echo_run, label, system, n_bots, delay, p,
                                         base_dir / f"run{k}-{system}-{n_bots}-{delay:g}")
                            _log_echo(label, row)
                        row.update({"system": system, "bots": n_bots, "delay_ms": delay, "repeat": rep})
                        result["echo_runs"].append(row)
                        failed |= bool(row.get("error"))
            for name, fn, key in (("recovery", recovery_run, "recovery_runs"),
                                  ("fidelity", fidelity_run, "fidelity_runs")):
                if name not in args.only:
                    continue
                k += 1
                label = f"[{k}] {name} (repeat {rep + 1})"
                if skips[name]:
                    row = {"skipped": skips[name]}
                else:
                    log.info("%s ...", label)
                    row = _guard(fn, label, p, base_dir / f"run{k}-{name}")
                    log.info("%s: %s", label, {x: row.get(x) for x in (
                        "recovery_s", "lost", "flood_waits", "achieved_pct", "error") if x in row})
                row["repeat"] = rep
                result[key].append(row)
                failed |= bool(row.get("error"))
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: ending every process we started, writing partial results")
    finally:
        harness.cleanup_all()
        ksm.HOLD.restore()
        left = harness.kill_leftovers()
        result["leftover_processes"] = left
    result["elapsed_s"] = round(time.monotonic() - t_start, 1)
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["git_commit_end"] = _git_commit()   # differs from git_commit if others committed meanwhile
    result["interrupted"] = interrupted
    keys = ("system", "bots", "delay_ms")
    result["echo"] = report.summarize(result["echo_runs"], keys, report.ECHO_METRICS)
    if result["recovery_runs"]:
        for r in result["recovery_runs"]:
            r.setdefault("bots", p["recovery_bots"])
            r.setdefault("rate", p["recovery_rate"])
        result["recovery"] = report.summarize(result["recovery_runs"], ("bots", "rate"),
                                              report.RECOVERY_METRICS)[0]
    if result["fidelity_runs"]:
        for r in result["fidelity_runs"]:
            r.setdefault("system", "tgfleet-" + p["fidelity_base"])
            for k2, v in (("bots", p["fidelity_bots"]), ("users", p["fidelity_users"]),
                          ("offered_rate", p["fidelity_rate"]), ("seconds", p["fidelity_seconds"])):
                r.setdefault(k2, v)
        result["fidelity"] = report.summarize(result["fidelity_runs"],
                                              ("system", "bots", "users", "offered_rate", "seconds"),
                                              report.FIDELITY_METRICS)[0]
    result["targets"] = report.targets(result["echo"], result.get("recovery"), result.get("fidelity"))
    print()
    print(report.table(result))
    path, latest = report.write_json(result, args.out_dir)
    print(f"\nwrote {path} and {latest} ({result['elapsed_s']:.0f} s)")
    if args.workdir or args.keep_workdir or failed:
        print(f"run directories (logs, configs): {base_dir}")
    else:
        shutil.rmtree(base_dir, ignore_errors=True)
    if left:
        print(f"WARNING: {len(left)} leftover process(es) were killed: {left}")
    return 130 if interrupted else (1 if failed or left else 0)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(harness.REPO_ROOT), capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _log_echo(label: str, row: dict) -> None:
    if row.get("error"):
        return
    log.info("%s: startup %.2fs, light p50/p99 %s/%s ms, offered %s/s, replies %s/s, PSS %s MB, "
             "CPU %s s/1k", label, row.get("startup_s") or 0, row.get("p50_ms"), row.get("p99_ms"),
             row.get("offered_per_s"), row.get("replies_per_s"), row.get("pss_mb"),
             row.get("cpu_s_per_1k"))


if __name__ == "__main__":
    sys.exit(main())

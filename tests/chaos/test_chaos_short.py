"""The short fault-injection run (CI): ~48 s of chaos on the processes base with a fixed seed and
at least two faults of every kind (SIGKILL of actor processes, a SIGSTOPped backend, restarts of
the local Telegram, queue bursts, corrupt admin frames, crash injection), then every check of
bench/chaos.py must pass: accounting, duplicates, no "database is locked", no orphan process,
SQLite integrity, memory back within bounds, every fault had its effect.

The run is a subprocess (`python -m bench.chaos`) in its own session: it ends what it started
itself (also on SIGTERM); if it overruns, this test SIGTERMs it, then SIGKILLs it, and kills by
PID anything still carrying this test's directory on its command line."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
BUDGET_S = 110          # the whole run, start to cleanup; the test must stay well under 2 min


def _leftovers(needle: str) -> list:
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.pid != os.getpid() and p.info["status"] != psutil.STATUS_ZOMBIE and \
                    needle in " ".join(p.info["cmdline"] or ()):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def test_short_chaos_run_passes_every_check(tmp_path):
    workdir = tmp_path / "chaos"
    out = tmp_path / "chaos.json"
    log = tmp_path / "chaos.log"
    cmd = [sys.executable, "-m", "bench.chaos", "--seconds", "48", "--base", "processes",
           "--seed", "7", "--bots", "4", "--min-each", "2", "--faults", "12",
           "--probe-interval", "1.0", "--warmup", "8", "--drain-idle", "4", "--drain-cap", "30",
           "--workdir", str(workdir), "--json", str(out)]
    t0 = time.monotonic()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=str(REPO), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(BUDGET_S)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGTERM)       # it cleans up what it started
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    finally:
        left = _leftovers(str(tmp_path))
        for p in left:
            p.kill()
    elapsed = time.monotonic() - t0
    text = log.read_text(errors="replace")
    assert not left, f"processes left behind: {[p.pid for p in left]}\n{text[-3000:]}"
    assert proc.returncode in (0, 1), f"chaos run failed ({proc.returncode}):\n{text[-4000:]}"
    result = json.loads(out.read_text())
    checks = {c["check"]: c for c in result["checks"]}
    assert set(checks) == {"accounting", "duplicates", "db_locked", "orphans", "integrity",
                           "memory", "faults"}
    kinds = {e["kind"] for e in result["events"] if not e.get("note")}
    assert kinds == {"kill", "stall", "restart_tg", "burst", "admin", "crash"}, kinds
    failed = {name: c["numbers"] for name, c in checks.items() if c["result"] != "PASS"}
    lost = [(bot, m["fault"], m["fault_target"], m["message_id"])
            for bot, v in checks["accounting"]["detail"]["per_bot"].items()
            for m in v["unanswered_near_bot_restarts"]]
    assert not failed, "chaos checks failed:\n" + "\n".join(
        f"  {k}: {v}" for k, v in failed.items()) + \
        f"\nunanswered messages sent around a restart of their bot: {lost}\n" + text[-3000:]
    assert proc.returncode == 0
    assert elapsed < BUDGET_S, f"took {elapsed:.0f}s"

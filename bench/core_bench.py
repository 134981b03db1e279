"""Core benchmark: restart time, memory and idle CPU of a running fleet with no bots.

    python -m bench.core_bench [--repeat 5] [--idle-seconds 30] [--bases inprocess,processes]
                               [--targets store,eventbus,ratelimit] [--json PATH]

Not a timed test: it measures and reports, with the issue's targets next to each number.
For each base a fresh fleet (`python -m system.cli run --config F`) starts with NO bots and the
local Telegram disabled, then:

- memory: PSS (psutil memory_full_info().pss) of the root supervisor + control + store. On the
  processes base those are three processes (pids from the admin socket's `status`; the root is
  their parent); on the in-process base it is the one process, i.e. the whole fleet. The whole
  system's PSS is reported too: on the processes base every process of the run (launcher,
  thespian's admin and logger, root and every child actor).
- idle CPU: CPU seconds (user + system) of every process of the run over --idle-seconds with
  nothing to do, as % of one core. The machine's busy CPU over the same window is recorded too:
  on a shared machine other work does not add CPU seconds to ours, but it says how noisy it was.
- restart time (processes base): SIGKILL one actor's process, then
    running: the admin socket's `status` shows the row running again with a new pid (the new
             actor answered its supervisor's Start with Started);
    answer:  for the store, a `config-set` of a fresh value then a `config-get` returning it
             (control -> store -> control: the restarted store answers a real request).
  For the event bus and the rate limiter no admin request goes through them, so "running" is
  their answer. Median and max over --repeat kills per actor. Every kill is a FIRST failure:
  the bench config sets `backoff_reset_after_s` to 0.5 s (kills are >= 1 s apart) and a high
  restart intensity, so the default first-restart backoff (0.05 s +- 20%) is included each time
  and repeated kills neither grow the backoff nor escalate (the default intensity is 5 in 30 s).
  On the in-process base there is no per-actor process to kill (SIGKILL ends the whole fleet),
  no bot to `ctl restart`, and no way to crash one actor from outside: reported as n/a.

Output: a table (metric, base, value, target, PASS/FAIL) on stdout and JSON (default
bench/results/core.json, never committed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import harness
from system.admin_client import AdminClient, AdminClientError, read_token
from system.boot import free_port, port_open
from system.config import DEFAULTS

RESULTS = Path(__file__).resolve().parent / "results" / "core.json"
BASES = ("inprocess", "processes")
TARGETS = ("store", "eventbus", "ratelimit")

# (target, seed design's ask) per metric
RESTART_TARGET_S, RESTART_SEED_S = 1.0, 30.0
CORE_PSS_TARGET_MB, CORE_PSS_SEED_MB = 60.0, 100.0
IDLE_CPU_TARGET_PCT = 1.0


# ---- the fleet under test ---------------------------------------------------------------------
def write_config(workdir: Path, base: str) -> tuple[Path, dict]:
    ports = {k: free_port() for k in ("admin", "control", "metrics")}
    cfg = f"""
[system]
base = "{base}"
admin_port = {ports['admin']}
data_dir = "{workdir / 'var'}"
shutdown_timeout_s = 20.0

[control]
port = {ports['control']}

[metrics]
port = {ports['metrics']}

[log]
level = "WARNING"

[supervision]
# every SIGKILL of the benchmark is a first failure (see the module docstring)
intensity = 1000
period_s = 30.0
backoff_reset_after_s = 0.5

[localtg]
enabled = false
demo_bots = 0
"""
    path = workdir / f"tgfleet-{base}.toml"
    path.write_text(cfg)
    return path, ports


class Fleet:
    def __init__(self, base: str, workdir: Path, start_timeout: float = 90.0):
        self.base, self.workdir = base, workdir
        self.config, self.ports = write_config(workdir, base)
        self.log = workdir / f"run-{base}.log"
        harness.track_cmdline(str(self.config))
        t0 = time.monotonic()
        self.proc = harness.spawn([sys.executable, "-m", "system.cli", "run", "--config",
                                   str(self.config)], self.log)
        if harness.wait_for_line(self.log, "0 of 0 bots running", self.proc,
                                 start_timeout) is None:
            raise RuntimeError(f"{base} fleet not up within {start_timeout:g}s:\n"
                               f"{harness.tail(self.log)}")
        self.client = None
        deadline = time.monotonic() + 30
        while self.client is None:
            if port_open("127.0.0.1", self.ports["control"]):
                token = read_token(str(workdir / "var" / "admin.token"))
                self.client = AdminClient("127.0.0.1", self.ports["control"], token, timeout=15)
            elif time.monotonic() > deadline:
                raise RuntimeError(f"{base}: the admin socket never opened")
            else:
                time.sleep(0.05)
        self.client.call("ping")
        self.start_s = time.monotonic() - t0

    def status(self) -> dict:
        """path -> status row (pid, state, restarts, ...)."""
        return {r["path"]: r for r in self.client.call("status")["actors"]}

    def processes(self) -> dict[int, str]:
        """pid -> role of every live process of this run."""
        rows = self.status()
        by_pid = {r["pid"]: r["path"].split("/", 1)[-1] for r in rows.values() if r["pid"]}
        procs = {p.pid: p for p in harness.processes_matching(str(self.config))}
        roles: dict[int, str] = {}
        if self.base == "inprocess":
            roles[self.proc.pid] = "fleet (one process)"
        else:
            children = [pid for pid in by_pid if pid != self.proc.pid]
            parents = {psutil.Process(pid).ppid() for pid in children}
            if len(parents) != 1:
                raise RuntimeError(f"the children of root have several parents: {parents}")
            root = parents.pop()
            admin = psutil.Process(root).ppid()
            roles.update({self.proc.pid: "launcher", root: "root", admin: "thespian admin"})
            roles.update({pid: by_pid[pid] for pid in children})
        for pid, p in procs.items():
            if pid not in roles:
                try:
                    ppid = p.ppid()
                except psutil.NoSuchProcess:
                    continue
                roles[pid] = ("thespian logger" if roles.get(ppid) == "thespian admin"
                              else f"other (ppid {ppid})")
        return roles

    def stop(self) -> int | None:
        return harness.terminate(self.proc, grace=30)


# ---- measurements ------------------------------------------------------------------------------
def measure_memory(fleet: Fleet) -> dict:
    roles = fleet.processes()
    per = {}
    for pid, role in sorted(roles.items()):
        try:
            m = psutil.Process(pid).memory_full_info()
        except psutil.NoSuchProcess:
            continue
        per[role] = {"pid": pid, "pss_mb": round(m.pss / 1e6, 2), "rss_mb": round(m.rss / 1e6, 2),
                     "uss_mb": round(m.uss / 1e6, 2)}
    if fleet.base == "inprocess":
        core = per["fleet (one process)"]["pss_mb"]
        core_note = "the one process (every actor, thespian, the launcher)"
    else:
        core = round(sum(per[r]["pss_mb"] for r in ("root", "control", "store")), 2)
        core_note = "root + control + store processes"
    return {"core_pss_mb": core, "core_note": core_note,
            "system_pss_mb": round(sum(v["pss_mb"] for v in per.values()), 2),
            "system_rss_mb": round(sum(v["rss_mb"] for v in per.values()), 2),
            "processes": len(per), "per_process": per}


def measure_idle_cpu(fleet: Fleet, seconds: float) -> dict:
    # the same processes at both ends (an idle fleet starts none), and no admin request inside
    # the window: it would cost CPU of its own
    roles = fleet.processes()
    procs = [psutil.Process(pid) for pid in roles]
    before, (m0, busy0) = harness.cpu_snapshot(procs), harness.machine_busy()
    time.sleep(seconds)
    after, (m1, busy1) = harness.cpu_snapshot(procs), harness.machine_busy()
    window = after.at - before.at
    cpu_s = harness.cpu_delta(before, after)
    per = {}
    for pid, role in roles.items():
        if pid in before.per_pid and pid in after.per_pid:
            used = after.per_pid[pid][1] - before.per_pid[pid][1]
            per[role] = {"pid": pid, "cpu_seconds": round(used, 3),
                         "percent_of_core": round(100.0 * used / window, 3)}
    return {"window_s": round(window, 2), "cpu_seconds": round(cpu_s, 4),
            "percent_of_core": round(100.0 * cpu_s / window, 3),
            "processes": len(after.per_pid), "per_process": per,
            "machine_busy_percent_of_core": round(100.0 * (busy1 - busy0) / (m1 - m0), 1)}


def kill_and_time(fleet: Fleet, target: str, seq: int, timeout: float = 30.0) -> dict:
    """SIGKILL root/<target>; seconds until it runs again with a new pid and (store) answers."""
    path = f"root/{target}"
    row = fleet.status()[path]
    old_pid = row["pid"]
    if row["state"] != "running" or not old_pid:
        raise RuntimeError(f"{path} is not running before the kill: {row}")
    t0 = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    deadline = t0 + timeout
    polls = 0
    while True:
        polls += 1
        row = fleet.status().get(path, {})
        if row.get("state") == "running" and row.get("pid") not in (None, 0, old_pid):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} not running again {timeout:g}s after SIGKILL: {row}")
        time.sleep(0.01)
    running_s = time.monotonic() - t0
    out = {"old_pid": old_pid, "new_pid": row["pid"], "running_s": round(running_s, 4),
           "status_polls": polls, "answer_s": None}
    if target == "store":
        value = f"kill-{seq}-{time.time()}"
        while True:
            try:
                fleet.client.call("config-set", key="bench.core", value=value)
                got = fleet.client.call("config-get", key="bench.core")
                if got.get("value") == value:
                    break
            except AdminClientError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the restarted store does not answer: {exc}") from exc
            time.sleep(0.01)
        out["answer_s"] = round(time.monotonic() - t0, 4)
    return out


def summarize(values: list[float]) -> dict:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {"median": None, "max": None, "values": []}
    return {"median": round(harness.median(vals), 4), "max": round(vals[-1], 4),
            "values": [round(v, 4) for v in values]}


def measure_restarts(fleet: Fleet, targets, repeat: int, gap_s: float) -> dict:
    kills = {t: [] for t in targets}
    for i in range(repeat):
        for t in targets:
            time.sleep(gap_s)   # > backoff_reset_after_s: the next kill is a first failure again
            kills[t].append(kill_and_time(fleet, t, i))
    out = {}
    for t, ks in kills.items():
        answer = [k["answer_s"] if k["answer_s"] is not None else k["running_s"] for k in ks]
        out[t] = {"running_s": summarize([k["running_s"] for k in ks]),
                  "answer_s": summarize(answer),
                  "answer_means": ("config-set + config-get through the restarted store"
                                   if t == "store" else "status row running with a new pid"),
                  "kills": ks}
    # the fleet is whole again: nothing else restarted, everything running
    rows = fleet.status()
    out["after"] = {p: {"state": r["state"], "restarts": r["restarts"]} for p, r in rows.items()}
    return out


def run_base(base: str, args, workdir: Path) -> dict:
    fleet = Fleet(base, workdir)
    try:
        result = {"start_to_answer_s": round(fleet.start_s, 3)}
        time.sleep(args.settle_seconds)
        result["idle_cpu"] = measure_idle_cpu(fleet, args.idle_seconds)
        result["memory"] = measure_memory(fleet)
        if base == "processes":
            result["restart"] = measure_restarts(fleet, args.targets, args.repeat, args.gap)
        else:
            result["restart"] = {"n/a": "one process: SIGKILL ends the whole fleet; with no "
                                        "bots there is nothing to `ctl restart`, and no actor "
                                        "can be crashed from outside"}
    finally:
        code = fleet.stop()
    result["exit_code"] = code
    if code != 0:
        result["exit_log_tail"] = harness.tail(fleet.log, 2000)
    return result


# ---- report ------------------------------------------------------------------------------------
def verdict(value, target) -> str:
    if value is None:
        return "n/a"
    return "PASS" if value < target else "FAIL"


def table_rows(results: dict) -> list[dict]:
    rows = []
    for base, r in results.items():
        mem, cpu, rs = r["memory"], r["idle_cpu"], r["restart"]
        rows.append({"metric": "core PSS (root+control+store) MB", "base": base,
                     "value": mem["core_pss_mb"], "target": f"< {CORE_PSS_TARGET_MB:g} "
                     f"(seed < {CORE_PSS_SEED_MB:g})",
                     "verdict": verdict(mem["core_pss_mb"], CORE_PSS_TARGET_MB)})
        rows.append({"metric": f"whole-system PSS MB ({mem['processes']} proc)", "base": base,
                     "value": mem["system_pss_mb"], "target": "-", "verdict": "info"})
        rows.append({"metric": f"idle CPU % of a core ({cpu['window_s']:g}s)", "base": base,
                     "value": cpu["percent_of_core"], "target": f"< {IDLE_CPU_TARGET_PCT:g}",
                     "verdict": verdict(cpu["percent_of_core"], IDLE_CPU_TARGET_PCT)})
        if "n/a" in rs:
            rows.append({"metric": "restart after SIGKILL s", "base": base, "value": "n/a",
                         "target": f"< {RESTART_TARGET_S:g}", "verdict": "n/a (one process)"})
        else:
            for t, v in rs.items():
                if t == "after":
                    continue
                what = "answers" if t == "store" else "running"
                for stat in ("median", "max"):
                    val = v["answer_s"][stat]
                    rows.append({"metric": f"restart {t} SIGKILL->{what} s ({stat})",
                                 "base": base, "value": val,
                                 "target": f"< {RESTART_TARGET_S:g} (seed < "
                                           f"{RESTART_SEED_S:g})",
                                 "verdict": verdict(val, RESTART_TARGET_S)})
        rows.append({"metric": "start -> control answers s", "base": base,
                     "value": r["start_to_answer_s"], "target": "-", "verdict": "info"})
    return rows


def render(rows: list[dict]) -> str:
    cols = ("metric", "base", "value", "target", "verdict")
    text = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths)) for t in text]
    return "\n".join(lines)


def git_state() -> dict:
    """The commit measured, and the tracked files changed in the working tree (they count)."""
    import subprocess
    repo = str(Path(__file__).resolve().parents[1])
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    return {"commit": head, "modified": [line[3:] for line in dirty.splitlines()]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.core_bench", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5, help="SIGKILLs per actor (default 5)")
    p.add_argument("--idle-seconds", type=float, default=30.0,
                   help="idle CPU window (default 30)")
    p.add_argument("--settle-seconds", type=float, default=3.0,
                   help="wait after start before measuring (default 3)")
    p.add_argument("--gap", type=float, default=1.0,
                   help="seconds between kills (> backoff_reset_after_s 0.5; default 1)")
    p.add_argument("--bases", default=",".join(BASES), help="inprocess,processes")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help="actors to SIGKILL on the processes base (default store,eventbus,"
                        "ratelimit)")
    p.add_argument("--json", default=str(RESULTS), help=f"JSON output (default {RESULTS})")
    args = p.parse_args(argv)
    bases = [b for b in args.bases.split(",") if b]
    args.targets = [t for t in args.targets.split(",") if t]
    if any(b not in BASES for b in bases) or any(t not in TARGETS for t in args.targets) \
            or args.repeat < 1 or args.idle_seconds <= 0:
        p.error(f"bases from {BASES}, targets from {TARGETS}, --repeat >= 1, --idle-seconds > 0")
    harness.install_signal_handlers()

    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tgfleet-core-bench-") as tmp:
        for base in bases:
            workdir = Path(tmp) / base
            workdir.mkdir()
            print(f"[{base}] starting a fleet with no bots ...", flush=True)
            results[base] = run_base(base, args, workdir)
    left = harness.leftovers()
    rows = table_rows(results)
    doc = {
        "benchmark": "core",
        "git": git_state(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python -m bench.core_bench " + " ".join(sys.argv[1:] if argv is None
                                                             else argv),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"repeat": args.repeat, "idle_seconds": args.idle_seconds,
                     "settle_seconds": args.settle_seconds, "gap_s": args.gap,
                     "targets": args.targets, "bots": 0, "localtg": False,
                     "supervision": {"intensity": 1000, "period_s": 30.0,
                                     "backoff_reset_after_s": 0.5,
                                     "backoff_base_s": 0.05,
                                     "probe_interval_s": DEFAULTS["supervision"]["probe_interval_s"]}},
        "targets": {"restart_s": RESTART_TARGET_S, "restart_seed_s": RESTART_SEED_S,
                    "core_pss_mb": CORE_PSS_TARGET_MB, "core_pss_seed_mb": CORE_PSS_SEED_MB,
                    "idle_cpu_percent": IDLE_CPU_TARGET_PCT},
        "bases": results,
        "table": rows,
        "leftover_processes": left,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(render(rows))
    print(f"\nJSON: {out}")
    if left:
        print(f"LEFTOVER PROCESSES: {left}", file=sys.stderr)
        return 1
    return 0 if all(r.get("exit_code") == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Process, memory and CPU measurement helpers for the benchmarks, and the process registry that
guarantees every process a benchmark starts is ended.

Why: a benchmark that leaves a fleet running skews the next run and every other engineer's work
on this 2-core machine. Every process goes through `spawn()` (its own session, output to a file,
never a pipe that could fill up and stall it) and is ended by `terminate()`: SIGTERM to its PID,
then SIGKILL to its process group, then SIGKILL to anything still in its session. `cleanup_all()`
runs at exit and from the SIGTERM handler that `install_signal_handlers()` sets.

Measurement: the "system under test" (SUT) is a root PID plus every descendant and every process
in its session (thespian actor processes), minus anything excluded (the local Telegram when the
launcher embeds it). Memory: RSS and PSS (psutil memory_full_info) summed over the set. CPU: per-PID
user+system seconds, diffed between two snapshots (processes that appear count in full, processes
that vanish count up to their last snapshot).
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.harness")

_started: dict[int, subprocess.Popen] = {}
_sessions: set[int] = set()     # session ids of everything we started (for the leftover check)
_needles: set[str] = set()      # command-line markers of process trees that leave our sessions


# ------------------------------------------------------------------ processes -----------------
def spawn(cmd: list[str], log_path: str | os.PathLike, env: dict | None = None,
          cwd: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start CMD in its own session with stdout+stderr appended to LOG_PATH; remember it."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        full_env.update(env)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=str(cwd or REPO_ROOT), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env, start_new_session=True)
    _started[proc.pid] = proc
    _sessions.add(proc.pid)
    return proc


def track_session(pid: int) -> None:
    """Also check the session of PID (a process started elsewhere, e.g. the local Telegram by
    run_local_telegram, which ends it itself) in leftovers()."""
    _sessions.add(pid)


def track_cmdline(needle: str) -> None:
    """Processes whose command line contains NEEDLE belong to us (thespian's admin double-forks
    into a session of its own; every process of a tgfleet run still carries its --config path)."""
    _needles.add(needle)


def processes_matching(needle: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains NEEDLE, except this process."""
    out = []
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.pid == me or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if needle in " ".join(p.info["cmdline"] or ()):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def kill_matching(needle: str, wait: float = 5.0) -> list[int]:
    """Wait up to WAIT s for processes matching NEEDLE to exit by themselves, then SIGKILL each
    one by PID. Returns the PIDs that had to be killed."""
    deadline = time.monotonic() + wait
    left = processes_matching(needle)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = processes_matching(needle)
    killed = []
    for p in left:
        try:
            log.warning("killing leftover pid %d (%s)", p.pid, _name(p))
            p.kill()
            killed.append(p.pid)
        except psutil.NoSuchProcess:
            continue
    return killed


def session_members(sid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose session id is SID, except this process."""
    out = []
    me = os.getpid()
    for p in psutil.process_iter(["pid", "status"]):
        if p.pid == me:
            continue
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getsid(p.pid) == sid:
                out.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError, OSError):
            continue
    return out


def terminate(proc: subprocess.Popen, grace: float = 15.0) -> int | None:
    """End PROC: SIGTERM by PID, wait up to GRACE s, then SIGKILL its group and its session.
    Returns its exit code (None if it could not be reaped)."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not exit %.0fs after SIGTERM: SIGKILL to its group", proc.pid, grace)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.error("pid %d not reaped after SIGKILL", proc.pid)
    for p in session_members(proc.pid):
        log.warning("killing leftover pid %d (%s) of session %d", p.pid, _name(p), proc.pid)
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    _started.pop(proc.pid, None)
    return proc.returncode


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:120]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"


def cleanup_all(grace: float = 5.0) -> None:
    """End every process spawn() started that is still registered (at exit, on signals), and
    anything left of the process trees tracked by command line."""
    for proc in list(_started.values()):
        terminate(proc, grace)
    for needle in list(_needles):
        kill_matching(needle, wait=0.0 if not _started else grace)


def leftovers() -> list[dict]:
    """Processes still alive in any session we created (should be empty at the end)."""
    out = []
    seen = set()
    for sid in sorted(_sessions):
        for p in session_members(sid):
            seen.add(p.pid)
            out.append({"pid": p.pid, "session": sid, "cmd": _name(p)})
    for needle in sorted(_needles):
        for p in processes_matching(needle):
            if p.pid not in seen:
                seen.add(p.pid)
                out.append({"pid": p.pid, "session": None, "cmd": _name(p)})
    return out


def kill_leftovers() -> list[dict]:
    """leftovers(), each one SIGKILLed by PID; returns what was found."""
    left = leftovers()
    for proc in left:
        log.error("leftover process %s: killing", proc)
        try:
            os.kill(proc["pid"], signal.SIGKILL)
        except ProcessLookupError:
            continue
    return left


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP -> KeyboardInterrupt in the main thread, so every `finally` and context
    manager runs and the processes we started are ended; cleanup_all() also runs at exit."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
    atexit.register(cleanup_all)


def wait_for_line(log_path, needle: str, proc: subprocess.Popen, timeout: float,
                  start_offset: int = 0) -> float | None:
    """Wait until LOG_PATH contains NEEDLE after START_OFFSET; returns time.monotonic() then, or
    None on timeout. Raises RuntimeError if PROC exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(log_path, "rb") as f:
                f.seek(start_offset)
                if needle.encode() in f.read():
                    return time.monotonic()
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"pid {proc.pid} exited with {proc.returncode} before {needle!r}; "
                               f"log {log_path}:\n{tail(log_path)}")
        time.sleep(0.01)
    return None


def tail(path, n: int = 3000) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "(no log)"
    return data[-n:].decode(errors="replace")


# ------------------------------------------------------------------ the system under test ------
def sut_processes(root_pid: int, exclude_pids=(), exclude_cmd=(), also=()) -> list[psutil.Process]:
    """ROOT_PID, its descendants, its session members and ALSO (more psutil processes, e.g. the
    ones matching a command line), alive and not zombies, minus excluded PIDs and processes
    whose command line contains one of EXCLUDE_CMD."""
    found: dict[int, psutil.Process] = {p.pid: p for p in also}
    try:
        root = psutil.Process(root_pid)
        found[root.pid] = root
        for c in root.children(recursive=True):
            found[c.pid] = c
    except psutil.NoSuchProcess:
        pass
    for p in session_members(root_pid):
        found.setdefault(p.pid, p)
    out = []
    excluded = set(exclude_pids)
    for pid, p in sorted(found.items()):
        if pid in excluded:
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if exclude_cmd:
                cmd = " ".join(p.cmdline())
                if any(x in cmd for x in exclude_cmd):
                    continue
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            pass
        out.append(p)
    return out


def memory(procs, labels: dict | None = None) -> dict:
    """Total RSS and PSS (MB) of PROCS, with the per-process numbers (and LABELS[pid], e.g. the
    actor path, when given)."""
    rss = pss = 0
    per = []
    for p in procs:
        try:
            m = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            m = None
        if m is None:
            continue
        rss += m.rss
        p_pss = getattr(m, "pss", m.rss)
        pss += p_pss
        entry = {"pid": p.pid, "rss_mb": round(m.rss / 1e6, 1), "pss_mb": round(p_pss / 1e6, 1)}
        if labels and p.pid in labels:
            entry["role"] = labels[p.pid]
        per.append(entry)
    return {"rss_mb": round(rss / 1e6, 1), "pss_mb": round(pss / 1e6, 1), "processes": len(per),
            "per_process": per}


@dataclass
class CpuSnapshot:
    at: float
    per_pid: dict = field(default_factory=dict)   # pid -> (create_time, cpu seconds)


def cpu_snapshot(procs) -> CpuSnapshot:
    snap = CpuSnapshot(time.monotonic())
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                snap.per_pid[p.pid] = (p.create_time(), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return snap


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot) -> float:
    """CPU seconds the SUT used between two snapshots (new processes count in full)."""
    total = 0.0
    for pid, (created, secs) in after.per_pid.items():
        prev = before.per_pid.get(pid)
        if prev is not None and prev[0] == created:
            total += max(0.0, secs - prev[1])
        else:
            total += secs
    return total


def machine_busy() -> tuple[float, float]:
    """(time.monotonic(), busy CPU seconds of the whole machine so far), to tell how much CPU
    other work on this shared machine took during a measurement window."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return time.monotonic(), sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def process_cpu(pid: int) -> float:
    """user+system CPU seconds of one process (0.0 if it is gone)."""
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return 0.0


# ------------------------------------------------------------------ statistics -----------------
def median(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.median(vals)


def python() -> str:
    return sys.executable

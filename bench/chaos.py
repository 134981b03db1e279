"""Fault injection under traffic: `python -m bench.chaos` (or `ops/chaos`).

    python -m bench.chaos --minutes 3 --base processes --seed 1 --bots 6 --json out.json

A bounded, loopback-only run. It starts its own local Telegram (so that it can restart it) and a
fleet configured against it (`[localtg] enabled = false`, `[[bots]]` with a `server` table), lets
the crowd talk to every bot, and injects a seeded schedule of faults, each logged with a
timestamp:

  kill        SIGKILL one actor process (backend, bot, store, rate limiter, event bus, metrics
              exporter, control), or a bot group's backend and bot at once (the group itself
              runs hosted in the bots supervisor), pids from `ops/ctl --json status`; never
              the launcher, the root or thespian's admin/logger. In-process base: `ctl restart`
              of a bot instead (there is one process).
  stall       SIGSTOP a backend for longer than the supervisor's probe timeout; the supervisor
              must find it hung and kill/restart it; SIGCONT if it is still alive afterwards.
              In-process base: the local Telegram is stalled instead (every backend waits).
  restart_tg  SIGTERM the local Telegram by PID and start it again on the same ports and data
              directory (its world persists in SQLite); the backends reconnect by themselves.
  burst       far more messages than `queue_max` (small on one bot) at once: counted drops.
  admin       garbage, oversized, truncated frames and a wrong token (asking for `destroy` and
              `shutdown`) on the control socket: error replies, nothing changes.
  crash       a handler (ChaosCrash below) returns an action the bot cannot queue: the bot actor
              crashes ("let it crash") and its supervisor restarts it.

The crowd runs for the whole chaos phase; then it is stopped and the fleet drains (until the
answers stop growing, bounded). Checks, each PASS/FAIL with its numbers (table + JSON; exit 1
if any fails):

  accounting  ground truth from the local Telegram's SQLite world, read after it stopped: every
              message the crowd (and the bursts) sent to a bot, and the bot replies that answer
              it (reply_to). Per bot: unanswered <= counted drops, where counted drops = the
              bot's drops on /metrics (tgfleet_bot_queue_drops_total + tgfleet_bot_actions_total
              {result="dropped"}, scraped every second, made monotonic across restarts of the
              exporter) + the drops a stopping bot logs ("bot X stopping: dropped {...}": those
              never reach /metrics). Messages the crowd could not send (server down) are the
              crowd's own `errors`; the crowd lives inside the server, so it sends nothing while
              the server is down. What cannot be measured is said so in the output.
  duplicates  crowd_stats duplicates (summed over server incarnations) and, from the world, any
              message answered twice although it was inside the dedup window -> must be 0.
  db_locked   no "database is locked" in any log of the run.
  orphans     after SIGTERM to the launcher (exit 0 expected) nothing is left: not in its
              session, not with its --config path on the command line, none of the pids seen
              during the run (same create time), nothing re-parented to PID 1.
  integrity   PRAGMA integrity_check = ok on every SQLite file (fleet store, local Telegram).
  memory      total PSS of the fleet at the end within `--mem-ratio` x the PSS after warm-up and
              under `--mem-cap-mb`.
  faults      every fault had its effect: killed actors came back, stalled backends were found
              hung, admin garbage got errors and changed nothing, bursts made counted drops,
              the restarted server answered again, every bot runs at the end.

Every process this starts is ended by PID (then its process group / session), also on errors,
SIGTERM and Ctrl-C.
"""
from __future__ import annotations

import argparse
import ast
import bisect
import datetime
import json
import os
import random
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from actors.handlers.base import Handler, caused_by
from bench.tomlout import toml_value as _toml
from system.procguard import pid_alive
from messages.telegram import SendText

REPO = Path(__file__).resolve().parents[1]
FAULT_KINDS = ("kill", "stall", "restart_tg", "burst", "admin", "crash")
KILL_TARGETS = ("backend", "bot", "group", "store", "ratelimit", "eventbus", "metrics", "control")
ROOT_SERVICES = ("store", "ratelimit", "eventbus", "metrics", "control")
WEIGHTS = {"kill": 5, "stall": 2, "restart_tg": 1, "burst": 1, "admin": 1, "crash": 1}
CRASH_TRIGGER = "chaos-crash-now"
DROP_SAMPLES = ("tgfleet_bot_queue_drops_total", "tgfleet_bot_actions_total")
STOP_DROPS = re.compile(r"bot (\S+) stopping: dropped (\{[^}]*\})")


# ---- crash injection, loaded by the fleet as a custom handler -----------------------------------

class ChaosCrash(Handler):
    """'bench.chaos:ChaosCrash': a private message containing config["trigger"] makes this handler
    return a SendText whose chat_id is not a chat id (a list). The pipeline accepts it (it is an
    Action); the bot actor cannot queue it (hashing the chat raises), so the bot actor crashes
    and its supervisor restarts it. Every other message gets nothing from this handler."""

    name = "chaos_crash"

    def __init__(self, config=None):
        super().__init__(config)
        self.trigger = str(self.config.get("trigger", CRASH_TRIGGER))

    def handle(self, update, ctx):
        if update.chat_kind == "private" and self.trigger in (update.text or ""):
            return [SendText(chat_id=["not", "a", "chat"], text="crash", **caused_by(update))]
        return []


# ---- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _psutil():
    import psutil
    return psutil


def cmdline_of(p) -> str:
    psutil = _psutil()
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def processes_with(needle: str, exclude=("system.cli ctl", "ops/ctl")) -> list:
    """Live, non-zombie processes whose command line contains NEEDLE (not ctl clients, not us)."""
    psutil = _psutil()
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.pid == os.getpid() or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or ())
            if needle in cmd and not any(x in cmd for x in exclude):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def session_members(sid: int) -> list:
    psutil = _psutil()
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if p.pid != os.getpid() and p.info["status"] != psutil.STATUS_ZOMBIE \
                    and os.getsid(p.pid) == sid:
                out.append(p)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError, OSError):
            continue
    return out


def pss_of(procs) -> dict:
    psutil = _psutil()
    total, per = 0, []
    for p in procs:
        try:
            m = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        pss = getattr(m, "pss", m.rss)
        total += pss
        per.append({"pid": p.pid, "pss_mb": round(pss / 1e6, 1)})
    return {"pss_mb": round(total / 1e6, 1), "processes": len(per), "per_process": per}


def role_of(path: str) -> str:
    """'backend', 'bot', 'bot group', 'store', ... for an actor path (or a process name)."""
    parts = path.split("/")
    if path.startswith("root/bots/") and len(parts) == 4:
        return parts[3]
    if path.startswith("root/bots/") and len(parts) == 3:
        return "bot group"
    if path.startswith("root/") and len(parts) == 2:
        return parts[1]
    return path


def signal_pid(pid: int, sig) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


# ---- the local Telegram, restartable ------------------------------------------------------------

class LocalTG:
    """Our own local Telegram on fixed ports (chosen free once), so it can be stopped by PID and
    started again on the same ports with the same data directory."""

    def __init__(self, workdir: Path, flood_limits: bool):
        self.workdir = workdir
        self.flood_limits = flood_limits
        self.port = free_port()
        self.control_port = free_port()
        self.cm = None
        self.tg = None
        self.incarnations = 0
        self.pids: list[int] = []
        self.stalled = False

    @property
    def log_path(self) -> Path:
        return self.workdir / "localtg.log"

    @property
    def db_path(self) -> Path:
        return self.workdir / "localtg" / "world.sqlite3"

    @property
    def control(self):
        return self.tg.control

    def start(self):
        from system.localtg.testing import run_local_telegram
        cm = run_local_telegram(self.workdir, flood_limits=self.flood_limits, port=self.port,
                                control_port=self.control_port, log_level="WARNING",
                                stop_grace=10.0)
        self.tg = cm.__enter__()
        self.tg.control.timeout = 5.0       # a stalled server must not stall the harness
        self.cm = cm
        self.incarnations += 1
        self.pids.append(self.tg.pid)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM by PID, wait; SIGKILL by PID if it does not go. Returns the exit code."""
        if self.tg is None:
            return None
        proc = self.tg.proc
        if proc.poll() is None:
            signal_pid(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                signal_pid(proc.pid, signal.SIGKILL)
                proc.wait(10)
        cm, self.cm, self.tg = self.cm, None, None
        cm.__exit__(None, None, None)
        return proc.returncode

    def stall(self, seconds: float, tick) -> None:
        pid = self.tg.pid
        signal_pid(pid, signal.SIGSTOP)
        self.stalled = True
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                tick()
                time.sleep(0.2)
        finally:
            signal_pid(pid, signal.SIGCONT)
            self.stalled = False


# ---- the fleet ----------------------------------------------------------------------------------



class Fleet:
    """`python -m system.cli run --config chaos.toml` in its own session, ended by PID."""

    def __init__(self, workdir: Path, base: str, bots: list[dict], server: dict, p: dict):
        self.workdir, self.base, self.bots, self.server, self.p = workdir, base, bots, server, p
        self.ports = {k: free_port() for k in ("admin", "control", "metrics")}
        self.data_dir = workdir / "var"
        self.config_path = workdir / "chaos.toml"
        self.log_path = workdir / "fleet.log"
        self.proc = None
        self._admin = None

    def write_config(self):
        p = self.p
        lines = [
            "[system]", f"base = {_toml(self.base)}", f"admin_port = {self.ports['admin']}",
            f"data_dir = {_toml(str(self.data_dir))}", "shutdown_timeout_s = 30.0", "",
            "[control]", f"port = {self.ports['control']}", "",
            "[metrics]", f"port = {self.ports['metrics']}", "",
            "[log]", 'level = "INFO"',
            'levels = { "telethon" = "WARNING", "pyrogram" = "WARNING", "asyncio" = "WARNING" }',
            "",
            "[supervision]", f"probe_interval_s = {_toml(p['probe_interval'])}",
            f"probe_misses = {p['probe_misses']}", "",
            "[localtg]", "enabled = false", "",
        ]
        for b in self.bots:
            lines += ["[[bots]]"] + [f"{k} = {_toml(v)}" for k, v in b.items()]
            lines += [f"server = {_toml(self.server)}", ""]
        self.config_path.write_text("\n".join(lines))

    def start(self, timeout: float):
        self.write_config()
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   THESPLOG_FILE=str(self.workdir / "thespian.log"))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "system.cli", "run", "--config", str(self.config_path)],
                cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True)
        n = len(self.bots)
        want = f"{n} of {n} bots running"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fleet exited early ({self.proc.returncode}):\n"
                                   f"{self.output()[-3000:]}")
            if want in self.output() and self.admin_ok():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the fleet did not reach {want!r} within {timeout:.0f}s:\n"
                           f"{self.output()[-3000:]}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def admin(self):
        from system.admin_client import AdminClient, read_token
        if self._admin is None:
            token = read_token(str(self.data_dir / "admin.token"))
            self._admin = AdminClient("127.0.0.1", self.ports["control"], token, timeout=10)
        return self._admin

    def admin_ok(self) -> bool:
        from system.admin_client import AdminClientError
        try:
            self.admin().call("ping")
            return True
        except (AdminClientError, OSError, ValueError):
            return False

    def status(self) -> list | None:
        """The actor rows (path, kind, state, restarts, pid, ...), None if control is away."""
        from system.admin_client import AdminClientError
        try:
            return self.admin().call("status")["actors"]
        except (AdminClientError, OSError, ValueError, KeyError):
            return None

    def ctl(self, *args, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "ops" / "ctl"), "--config", str(self.config_path),
                               *args], capture_output=True, text=True, timeout=timeout,
                              cwd=str(REPO))

    def ctl_status(self) -> list | None:
        """`ops/ctl --json status` (what an operator would run to find the pids)."""
        try:
            r = self.ctl("--json", "status", timeout=20)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)["result"]["actors"]
        except (ValueError, KeyError):
            return None

    def processes(self) -> list:
        """The launcher and every process carrying our --config path (actor processes, and on the
        processes base thespian's admin and logger, which leave the launcher's session)."""
        psutil = _psutil()
        found = {p.pid: p for p in processes_with(str(self.config_path))}
        if self.proc is not None and self.proc.poll() is None:
            try:
                found.setdefault(self.proc.pid, psutil.Process(self.proc.pid))
            except psutil.NoSuchProcess:
                pass
        return [found[k] for k in sorted(found)]

    def stop(self, grace: float = 60.0) -> tuple[int | None, float, bool]:
        """SIGTERM the launcher by PID; (exit code, seconds, forced)."""
        if self.proc is None:
            return None, 0.0, False
        t0 = time.monotonic()
        forced = False
        if self.proc.poll() is None:
            signal_pid(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                forced = True
                with_pg_kill(self.proc.pid)
                self.proc.wait(10)
        return self.proc.returncode, time.monotonic() - t0, forced


def with_pg_kill(pid: int):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        signal_pid(pid, signal.SIGKILL)


# ---- /metrics, made monotonic across exporter restarts ------------------------------------------

class DropCounter:
    """Scrapes /metrics and sums the increase of the bots' drop counters. Within one exporter
    lifetime its counters never go down (it absorbs actor restarts itself). When the exporter
    itself restarts, its history is gone: the first scrape of the new one, taken a few report
    intervals after it is back, is a new baseline. Increments between the last scrape before
    and the baseline after such a restart are not seen: those windows are recorded."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.totals: dict[tuple, float] = {}
        self.last: dict[tuple, float] | None = {}     # None = next good scrape is a baseline
        self.scrapes = 0
        self.failures = 0
        self.decreases = 0
        self.epochs = 1
        self.blind: list[dict] = []                 # windows whose increments are not counted
        self._blind_from = None
        self.ok_total = 0.0                         # actions sent (any bot), for the drain
        self.queue_depth = 0.0
        self.paused = False                         # the exporter restarts: no baseline yet

    def scrape(self) -> bool:
        from prometheus_client.parser import text_string_to_metric_families
        if self.paused:
            return False
        try:
            text = urllib.request.urlopen(self.url, timeout=3).read().decode()
        except OSError:
            self.failures += 1
            return False
        values, ok, depth = {}, 0.0, 0.0
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name in DROP_SAMPLES:
                    labels = dict(s.labels)
                    if s.name == "tgfleet_bot_actions_total":
                        if labels.get("result") == "ok":
                            ok += s.value
                        if labels.get("result") != "dropped":
                            continue
                    values[(s.name, tuple(sorted(labels.items())))] = s.value
                elif s.name == "tgfleet_bot_queue_depth":
                    depth += s.value
        self.scrapes += 1
        self.ok_total, self.queue_depth = ok, depth
        if self.last is None:
            self.last = values
            if self._blind_from is not None:
                self.blind.append({"from": self._blind_from, "to": time.monotonic()})
                self._blind_from = None
            return True
        for key, v in values.items():
            prev = self.last.get(key, 0.0)
            if v >= prev:
                self.totals[key] = self.totals.get(key, 0.0) + (v - prev)
            else:                   # should not happen within one exporter lifetime
                self.decreases += 1
                self.totals[key] = self.totals.get(key, 0.0) + v
        self.last = values
        return True

    def exporter_restarting(self):
        """Call right after the exporter was killed (after a last scrape before it); scrapes
        pause until `rebaseline()`."""
        self.last = None
        self.paused = True
        self.epochs += 1
        self._blind_from = time.monotonic()

    def rebaseline(self) -> bool:
        """The restarted exporter has had every source's reports: take its baseline."""
        self.paused = False
        return self.scrape()

    def by_bot(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for (name, labels), v in self.totals.items():
            ls = dict(labels)
            bot = ls.get("bot", "?")
            d = out.setdefault(bot, {"queue_full": 0, "dropped": 0})
            if name == "tgfleet_bot_queue_drops_total":
                d["queue_full"] += int(round(v))
            else:
                d["dropped"] += int(round(v))
        return out


# ---- ground truth: the local Telegram's world ---------------------------------------------------

def world_accounting(db_path: Path, bots: dict[int, str], window: int) -> dict:
    """Every message crowd users (crowd*), burst users (chaosburst*) and probe users
    (chaosprobe*, a few messages right after each fault that restarts a bot) sent to our bots,
    and the
    bot messages that answer them (reply_to), read from the stopped server's SQLite world."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        users = {}
        for uid, uname in db.execute("SELECT user_id, username FROM accounts"):
            if uname and re.fullmatch(r"crowd\d+", uname):
                users[uid] = "crowd"
            elif uname and uname.startswith("chaosburst"):
                users[uid] = "burst"
            elif uname and uname.startswith("chaosprobe"):
                users[uid] = "probe"
        rows = db.execute("SELECT id, from_id, peer_kind, peer_id, reply_to FROM messages "
                          "WHERE deleted = 0 AND peer_kind = 'user' ORDER BY id").fetchall()
        dates_rows = db.execute("SELECT id, date FROM messages WHERE peer_kind = 'user'"
                                ).fetchall()
    finally:
        db.close()
    inbound: dict[int, tuple] = {}               # id -> (bot, user)
    per_bot_ids: dict[int, list] = {b: [] for b in bots}
    replies: dict[int, list] = {}                # inbound id -> [reply ids]
    unmatched = 0
    for mid, frm, _kind, peer, reply_to in rows:
        if frm in users and peer in bots:
            inbound[mid] = (peer, frm)
            per_bot_ids[peer].append(mid)
        elif frm in bots and peer in users:
            src = inbound.get(reply_to)
            if src is not None and src == (frm, peer):
                replies.setdefault(reply_to, []).append(mid)
            else:
                unmatched += 1
    per_bot = {}
    dup_in_window = dup_beyond = 0
    dates = {mid: d for mid, d in dates_rows}
    for bid, name in bots.items():
        ids = per_bot_ids[bid]
        answered = sum(1 for i in ids if i in replies)
        lost = [(i, dates.get(i)) for i in ids if i not in replies]
        dups = 0
        for i in ids:
            r = replies.get(i, [])
            if len(r) > 1:
                dups += 1
                # inbound messages to this bot between the original and its second answer
                between = bisect.bisect_left(ids, r[1]) - bisect.bisect_right(ids, i)
                if between < window:
                    dup_in_window += 1
                else:
                    dup_beyond += 1
        kinds = {"crowd": 0, "burst": 0, "probe": 0}
        for i in ids:
            kinds[users[inbound[i][1]]] += 1
        per_bot[name] = {"sent": len(ids), "crowd": kinds["crowd"], "burst": kinds["burst"],
                         "probe": kinds["probe"], "answered": answered,
                         "unanswered": len(ids) - answered, "duplicates": dups,
                         "unanswered_ids": lost}
    total = {k: sum(v[k] for v in per_bot.values())
             for k in ("sent", "crowd", "burst", "probe", "answered", "unanswered",
                       "duplicates")}
    return {"per_bot": per_bot, "total": total, "unmatched_replies": unmatched,
            "duplicates_within_window": dup_in_window, "duplicates_beyond_window": dup_beyond}


def integrity(path: Path) -> str:
    try:
        db = sqlite3.connect(str(path), timeout=10)
        try:
            return ";".join(r[0] for r in db.execute("PRAGMA integrity_check"))
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"error: {exc}"


# ---- the run ------------------------------------------------------------------------------------

class ChaosRun:
    def __init__(self, p: dict):
        self.p = p
        self.base = p["base"]
        self.rng = random.Random(p["seed"])
        self.events: list[dict] = []
        self.t0 = time.monotonic()
        self.workdir = Path(p["workdir"])
        self.tg: LocalTG | None = None
        self.fleet: Fleet | None = None
        self.drops: DropCounter | None = None
        self.bot_ids: dict[int, str] = {}          # user id -> bot name
        self.names: list[str] = []
        self.burst_bot = ""
        self.burst_users: list[int] = []
        self.probe_users: list[int] = []
        self.probe_no = 0
        self.ops_user = 0
        self.crowd_totals: list[dict] = []          # crowd_stats per server incarnation
        self.crowd_prefix = ""
        self.seen: dict[int, tuple] = {}            # pid -> (create_time, cmdline) of the fleet
        self.status_rows: list | None = None
        self.pending: list[dict] = []               # faults waiting for their recovery
        self.last_poll = self.last_scrape = self.last_scan = self.last_mem = 0.0
        self.last_burst = -1e9
        self.metrics_killed_pid = 0
        self.faults_by_bot: dict[str, list] = {}
        self.root_kills: list[float] = []
        self.mem_samples: list[dict] = []
        self.kill_cycle: list[str] = []
        self.deferred: list = []                    # (due monotonic, fn): later looks at a fault

    # ---- logging -------------------------------------------------------------------------------
    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def say(self, msg: str):
        print(f"[{self.now():7.1f}s] {msg}", flush=True)

    def event(self, kind: str, **info) -> dict:
        ev = {"t": self.now(), "time": datetime.datetime.now().isoformat(timespec="milliseconds"),
              "kind": kind, **info}
        self.events.append(ev)
        detail = " ".join(f"{k}={v}" for k, v in info.items() if k not in ("ok", "note"))
        self.say(f"FAULT {kind}: {detail}")
        return ev

    # ---- setup ---------------------------------------------------------------------------------
    def setup(self):
        p = self.p
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.say(f"workdir {self.workdir}")
        self.tg = LocalTG(self.workdir, p["flood_limits"])
        self.tg.start()
        c = self.tg.control
        self.say(f"local Telegram pid {self.tg.tg.pid} on 127.0.0.1:{self.tg.port} "
                 f"(control {self.tg.control_port}), flood limits "
                 f"{'on' if p['flood_limits'] else 'off'}")
        server = {"host": self.tg.tg.host, "port": self.tg.port,
                  "rsa_public_key": self.tg.tg.rsa_public_key}
        bots = []
        for i in range(p["bots"]):
            name = f"chaos{i + 1}"
            acc = c.create_account("bot", username=f"{name}_bot", first_name=f"Chaos {i + 1}")
            self.bot_ids[acc["user_id"]] = name
            self.names.append(name)
            if i % 2 == 0:
                main = {"type": "echo"}
            else:
                main = {"type": "autoreply", "rules": [{"match": "hi", "reply": "Hi! {text}"}],
                        "default": "chaos: {first_word}"}
            cfg = {"name": name, "library": "telethon" if i % 2 == 0 else "pyrogram",
                   "account_kind": "bot", "token": acc["bot_token"],
                   "handlers": [{"type": "bench.chaos:ChaosCrash", "trigger": CRASH_TRIGGER},
                                main]}
            if i == min(1, p["bots"] - 1):
                cfg["queue_max"] = p["queue_max"]
                self.burst_bot = name
            bots.append(cfg)
        self.burst_users = [c.create_account("user", username=f"chaosburst{i}")["user_id"]
                            for i in range(p["burst_users"])]
        self.probe_users = [c.create_account("user", username=f"chaosprobe{i}")["user_id"]
                            for i in range(p["probes"])]
        self.ops_user = c.create_account("user", username="chaos_ops")["user_id"]
        self.fleet = Fleet(self.workdir, self.base, bots, server, p)
        t = time.monotonic()
        self.fleet.start(p["start_timeout"])
        self.say(f"fleet ({self.base}) up: {p['bots']} of {p['bots']} bots running in "
                 f"{time.monotonic() - t:.1f}s; config {self.fleet.config_path}")
        self.drops = DropCounter(self.fleet.ports["metrics"])
        self.poll(force=True)
        self.start_crowd()

    def start_crowd(self):
        """(Re)start the crowd. Its text token '#c<seq>' restarts at 1 with every server
        incarnation, so a late answer to an earlier incarnation's message could be credited to
        a new one by its token: the prefix puts '#c0' (never a valid seq) first, and the crowd
        then matches answers by reply_to alone (message ids persist across restarts)."""
        n = self.tg.incarnations
        self.crowd_prefix = f"hi r{n} #c0"
        self.tg.control.crowd_start(list(self.bot_ids), self.p["users"], self.p["rate"],
                                    text_prefix=self.crowd_prefix)

    def crowd_answered(self) -> int:
        """Answers the crowd has had from the server running now: 0 while it is stopped (inside
        a restart) or stalled, or when it does not answer."""
        from system.localtg.control import ControlError
        if self.tg.tg is None or self.tg.stalled:
            return 0
        try:
            return self.tg.control.crowd_stats()["answered"]
        except (ControlError, OSError, ValueError, KeyError):
            return 0

    def crowd_snapshot(self, stop: bool) -> dict:
        c = self.tg.control
        s = c.crowd_stop() if stop else c.crowd_stats()
        keep = {k: s.get(k) for k in ("sent", "answered", "unanswered", "duplicates", "errors",
                                      "unmatched_bot_messages", "expired_untracked")}
        keep["incarnation"] = self.tg.incarnations
        keep["latency_ms"] = s.get("latency_ms")
        return keep

    # ---- polling (status, metrics, processes) --------------------------------------------------
    def later(self, seconds: float, fn):
        self.deferred.append((time.monotonic() + seconds, fn))

    def poll(self, force: bool = False):
        now = time.monotonic()
        for item in [d for d in self.deferred if d[0] <= now]:
            self.deferred.remove(item)
            item[1]()
        if force or now - self.last_scrape >= 1.0:
            self.last_scrape = now
            self.drops.scrape()
        if force or now - self.last_poll >= 2.0:
            self.last_poll = now
            rows = self.fleet.status()
            if rows is not None:
                self.status_rows = rows
                self.check_recoveries(rows)
        if force or now - self.last_scan >= 3.0:
            self.last_scan = now
            self.scan_processes()
        if self.mem_samples and now - self.last_mem >= 30.0:
            self.last_mem = now
            self.memory("during")

    def scan_processes(self):
        psutil = _psutil()
        for proc in self.fleet.processes():
            if proc.pid in self.seen:
                continue
            try:
                self.seen[proc.pid] = (proc.create_time(), cmdline_of(proc))
            except psutil.NoSuchProcess:
                continue

    def rows_by_path(self, rows=None) -> dict:
        return {r["path"]: r for r in (rows if rows is not None else self.status_rows or [])}

    def check_recoveries(self, rows):
        by = self.rows_by_path(rows)
        if any(ev["kind"] == "restart_tg" for ev in self.pending):
            self.restarts_answered(self.crowd_answered())
        for ev in list(self.pending):
            if ev["kind"] == "restart_tg":
                continue
            r = by.get(ev["target"])
            if r is None or r["state"] != "running":
                continue
            if self.base == "processes":
                back = r["pid"] not in (0, ev.get("pid")) and ev.get("pid") is not None
            else:
                back = r["restarts"] > ev.get("restarts_before", 0)
            if back:
                ev["recovered_s"] = round(self.now() - ev["t"], 2)
                self.pending.remove(ev)

    def restarts_answered(self, answered: int):
        """The pending server restarts are over once the running server has seen answers (its
        crowd restarts with each incarnation). This also ends a restart whose check had not
        come yet when the server was restarted again: answers in any later incarnation show
        the fleet came back after it too."""
        if answered <= 0:
            return
        for ev in [e for e in self.pending if e["kind"] == "restart_tg"]:
            ev["recovered_s"] = round(self.now() - ev["t"], 2)
            ev["ok"] = True
            self.pending.remove(ev)

    def wait(self, seconds: float):
        end = time.monotonic() + seconds
        while True:
            self.poll()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.2, left))

    def fresh_status(self, timeout: float = 15.0) -> list | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.fleet.ctl_status()
            if rows is not None:
                self.status_rows = rows
                self.check_recoveries(rows)
                return rows
            self.wait(0.5)
        return None

    def memory(self, label: str) -> dict:
        psutil = _psutil()
        procs = self.fleet.processes()
        m = pss_of(procs)
        if self.base == "processes":
            names = {r["pid"]: r["path"] for r in self.status_rows or [] if r.get("pid")}
            names[self.fleet.proc.pid] = "launcher"
            parent = {}
            for proc in procs:
                try:
                    parent[proc.pid] = proc.ppid()
                except psutil.NoSuchProcess:
                    continue
            kids: dict[int, list] = {}
            for pid, ppid in parent.items():
                kids.setdefault(ppid, []).append(pid)
            # thespian's admin, logger and our root share the launcher's command line: the root
            # is the parent of the root-level actors, the admin the root's parent, the logger
            # the admin's other child
            for pid in parent:
                if pid not in names and any(names.get(k, "").count("/") == 1
                                            for k in kids.get(pid, [])):
                    names[pid] = "root"
            for pid in parent:
                if pid not in names and any(names.get(k) == "root" for k in kids.get(pid, [])):
                    names[pid] = "thespian admin"
            roles: dict[str, float] = {}
            for item in m["per_process"]:
                actor = names.get(item["pid"])
                if actor is None:
                    actor = ("thespian logger" if names.get(parent.get(item["pid"]))
                             == "thespian admin" else "other")
                item["actor"] = actor
                role = role_of(actor)
                roles[role] = round(roles.get(role, 0.0) + item["pss_mb"], 1)
            m["by_role_mb"] = dict(sorted(roles.items()))
        m.update(label=label, t=self.now())
        self.last_mem = time.monotonic()
        self.mem_samples.append({k: v for k, v in m.items() if k != "per_process"})
        return m

    # ---- fault bookkeeping ---------------------------------------------------------------------
    def note_bot_fault(self, name: str):
        self.faults_by_bot.setdefault(name, []).append(time.monotonic())

    def recent_bot_faults(self, name: str, within: float = 60.0) -> int:
        now = time.monotonic()
        return sum(1 for t in self.faults_by_bot.get(name, []) if now - t < within)

    def pick_part(self, fault: str, part: str):
        """(bot name, path, status row) of PART ("bot", "backend") of a bot picked for FAULT,
        or None (logged as a skipped fault) when no bot is eligible."""
        rows = self.fresh_status()
        name = self.pick_bot(rows, part) if rows else None
        if name is None:
            self.event(fault, target="-", ok=True, note=f"skipped: no eligible {part}")
            return None
        path = f"root/bots/{name}/{part}"
        return name, path, self.rows_by_path(rows)[path]

    def pick_bot(self, rows, part: str | None) -> str | None:
        """A running bot with the fewest faults in the last minute (a bot group that restarts
        more than 5 times a minute is given up on: the schedule stays below that; a restart of
        the local Telegram restarts nothing, the backends reconnect), ties at random."""
        by = self.rows_by_path(rows)
        cands = []
        for name in self.names:
            path = f"root/bots/{name}" + (f"/{part}" if part else "")
            r = by.get(path)
            g = by.get(f"root/bots/{name}")
            if r is None or g is None or r["state"] != "running" or g["state"] != "running":
                continue
            if self.base == "processes" and not r.get("pid"):
                continue
            n = self.recent_bot_faults(name)
            if n < self.p["max_bot_faults_per_min"]:
                cands.append((n, self.rng.random(), name))
        return min(cands)[2] if cands else None

    def next_kill_target(self) -> str:
        if not self.kill_cycle:
            self.kill_cycle = list(KILL_TARGETS)
            self.rng.shuffle(self.kill_cycle)
        return self.kill_cycle.pop(0)

    def root_kill_allowed(self, what: str) -> bool:
        now = time.monotonic()
        self.root_kills = [t for t in self.root_kills if now - t < 30.0]
        if len(self.root_kills) >= 2:      # the root escalates past 5 restarts in 30 s
            return False
        if what == "metrics" and now - self.last_burst < 10.0:
            return False                   # its drop counts must be scraped first
        return True

    # ---- faults --------------------------------------------------------------------------------
    def fault_kill(self):
        rows = self.fresh_status()
        if rows is None:
            self.event("kill", target="-", ok=False, note="no status from ctl")
            return
        what = self.next_kill_target()
        if what in ROOT_SERVICES and not self.root_kill_allowed(what):
            what = self.rng.choice(("backend", "bot", "group"))
        if self.base != "processes":
            return self.restart_bot(rows, what)
        if what in ROOT_SERVICES:
            path = f"root/{what}"
            name = None
        else:
            part = {"backend": "backend", "bot": "bot", "group": None}[what]
            name = self.pick_bot(rows, part or "bot")   # a group: its bot row has the pid
            if name is None:
                self.event("kill", target=what, ok=True, note="skipped: every bot had its "
                           "share of faults in the last minute")
                return
            # A group runs hosted in the bots supervisor (actors/hosted.py): its death is its
            # backend and bot dying at once. Recovered when the bot runs again.
            path = f"root/bots/{name}/{part or 'bot'}"
        by = self.rows_by_path(rows)
        victims = [by.get(f"root/bots/{name}/backend"), by.get(path)] if what == "group" \
            else [by.get(path)]
        if any(r is None or r["state"] != "running" or not r.get("pid") for r in victims):
            self.event("kill", target=path, ok=True, note="skipped: not running right now")
            return
        pid = victims[-1]["pid"]
        if not all(self.is_fleet_actor(r["pid"]) for r in victims):
            self.event("kill", target=path, pid=pid, ok=False, note="pid is not a fleet actor")
            return
        if what == "metrics":
            self.drops.scrape()            # the last look at its counters
        for r in victims:
            signal_pid(r["pid"], signal.SIGKILL)
        if what == "metrics":
            self.drops.exporter_restarting()
            self.metrics_killed_pid = pid
        if name:
            self.note_bot_fault(name)
        else:
            self.root_kills.append(time.monotonic())
        ev = self.event("kill", target=path, actor=what, pid=pid)
        if name:
            self.send_probes(name, ev)
        self.pending.append(ev)
        if what == "metrics":
            self.later(0.5, self.watch_exporter)

    def send_probes(self, name: str, ev: dict):
        """A few messages to bot NAME right after a fault that restarts it (each from its own
        user, 50 ms apart): they arrive while the bot or its backend is being replaced, and must
        be answered or counted like any other."""
        from system.localtg.control import ControlError
        bot = next(b for b, n in self.bot_ids.items() if n == name)
        ids = []
        for user in self.probe_users:
            self.probe_no += 1
            try:
                ids.append(self.tg.control.send_as(user, bot, f"probe {self.probe_no}")["id"])
            except (ControlError, OSError) as exc:
                ev.setdefault("probe_errors", []).append(str(exc)[:80])
            time.sleep(0.05)
        ev["probes"] = ids

    def watch_exporter(self):
        """After a kill of the metrics exporter: once the new one runs, wait until every source
        has reported to it (an idle actor reports only every IDLE_REPORT_S), then baseline."""
        r = self.rows_by_path().get("root/metrics")
        if r and r["state"] == "running" and r["pid"] and r["pid"] != self.metrics_killed_pid:
            self.later(report_silence_s() + 2.0, self.take_baseline)
        else:
            self.later(0.5, self.watch_exporter)

    def take_baseline(self):
        if not self.drops.rebaseline():
            self.drops.paused = True
            self.later(1.0, self.take_baseline)

    def wait_for_baseline(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while self.drops.paused and time.monotonic() < deadline:
            self.wait(0.5)
        if self.drops.paused:
            self.say("WARNING: no baseline from the restarted metrics exporter")

    def is_fleet_actor(self, pid: int) -> bool:
        psutil = _psutil()
        if self.fleet.proc is not None and pid == self.fleet.proc.pid:
            return False
        try:
            return str(self.fleet.config_path) in cmdline_of(psutil.Process(pid))
        except psutil.NoSuchProcess:
            return False

    def restart_bot(self, rows, what):
        """In-process base: no per-actor process; `ctl restart` a bot instead."""
        name = self.pick_bot(rows, None)
        if name is None:
            self.event("kill", target="ctl restart", ok=True, note="skipped: faults budget")
            return
        path = f"root/bots/{name}"
        before = self.rows_by_path(rows)[path]["restarts"]
        r = self.fleet.ctl("restart", name)
        self.note_bot_fault(name)
        ev = self.event("kill", target=path, actor="ctl restart (in-process base, was "
                        f"{what})", ctl_rc=r.returncode, restarts_before=before)
        self.send_probes(name, ev)
        ev["ok"] = r.returncode == 0
        self.pending.append(ev)

    def fault_stall(self):
        if self.base != "processes":
            secs = min(self.p["stall_s"], 8.0)
            self.event("stall", target="local Telegram (in-process base)", seconds=secs)
            for name in self.names:
                self.note_bot_fault(name)
            self.tg.stall(secs, self.poll)
            return
        picked = self.pick_part("stall", "backend")
        if picked is None:
            return
        name, path, row = picked
        pid = row["pid"]
        if not self.is_fleet_actor(pid):
            self.event("stall", target=path, pid=pid, ok=False, note="pid is not a fleet actor")
            return
        limit = self.p["probe_interval"] * (self.p["probe_misses"] + 1)
        signal_pid(pid, signal.SIGSTOP)
        self.note_bot_fault(name)
        ev = self.event("stall", target=path, pid=pid, probe_timeout_s=round(limit, 2),
                        max_s=self.p["stall_s"])
        self.send_probes(name, ev)
        t = time.monotonic()
        while time.monotonic() - t < self.p["stall_s"] and pid_alive(pid):
            self.wait(0.2)
        if pid_alive(pid):
            signal_pid(pid, signal.SIGCONT)
            ev["detected"] = False
            ev["ok"] = False
            self.say(f"  stall of {path} NOT detected within {self.p['stall_s']}s: SIGCONT")
        else:
            ev["detected"] = True
            ev["killed_after_s"] = round(time.monotonic() - t, 2)
            self.say(f"  {path} killed by its supervisor {ev['killed_after_s']}s after SIGSTOP")
        self.pending.append(ev)

    def fault_restart_tg(self):
        snap = self.crowd_snapshot(stop=True)
        self.crowd_totals.append(snap)
        self.restarts_answered(snap["answered"] or 0)   # a restart just before this one
        old = self.tg.tg.pid
        t = time.monotonic()
        rc = self.tg.stop()
        down = self.p["tg_down_s"]
        ev = self.event("restart_tg", pid=old, exit_code=rc, down_s=down,
                        crowd_before=f"{snap['sent']} sent/{snap['answered']} answered")
        self.wait(down)
        self.tg.start()
        ev["new_pid"] = self.tg.tg.pid
        ev["incarnation"] = self.tg.incarnations
        ev["target"] = "local Telegram"
        ev["restart_s"] = round(time.monotonic() - t, 2)
        self.start_crowd()
        ev["ok"] = None
        self.pending.append(ev)             # done when the restarted server sees answers
        self.say(f"  server back (pid {ev['new_pid']}) after {ev['restart_s']}s")

    def fault_burst(self):
        self.wait_for_baseline()            # drops must be counted by a baselined exporter
        bot = next(b for b, n in self.bot_ids.items() if n == self.burst_bot)
        before = self.drops.by_bot().get(self.burst_bot, {}).get("queue_full", 0)
        n = self.p["burst"]
        c = self.tg.control
        t = time.monotonic()
        sent = 0
        from system.localtg.control import ControlError
        for k in range(n):
            try:
                c.send_as(self.burst_users[k % len(self.burst_users)], bot, f"burst {k} #b")
                sent += 1
            except (ControlError, OSError):
                break
        self.last_burst = time.monotonic()
        ev = self.event("burst", bot=self.burst_bot, sent=sent, queue_max=self.p["queue_max"],
                        send_s=round(time.monotonic() - t, 2))
        ev["ok"] = None

        def count(tries=[0]):
            got = self.drops.by_bot().get(self.burst_bot, {}).get("queue_full", 0) - before
            tries[0] += 1
            if got <= 0 and tries[0] < 6:   # the backend may still be delivering the burst
                self.later(5.0, count)
                return
            ev["queue_full_drops"] = got
            ev["ok"] = got > 0
            self.say(f"  burst at {ev['t']}s: {got} queue_full drops counted on /metrics "
                     f"{5 * tries[0]}s later")
        self.later(5.0, count)

    def fault_admin(self):
        from messages import codec
        from system.admin_client import AdminClientError
        rows = self.fresh_status()
        if rows is None:
            self.event("admin", ok=False, note="no status from ctl")
            return
        by = self.rows_by_path(rows)
        control_pid = by.get("root/control", {}).get("pid")
        groups = sorted(p for p in by if p.startswith("root/bots/") and p.count("/") == 2)
        target = self.rng.choice(self.names)
        client = self.fleet.admin()
        results = {}
        bad = b"\xc1" + bytes(self.rng.getrandbits(8) for _ in range(200))
        attempts = {
            "garbage": codec.frame(bad),
            "oversized": struct.pack(">I", 10_000_000) + b"x" * 100,
            "not_an_envelope": codec.frame(b"\x93\x01\x02\x03"),
            "wrong_token_destroy": codec.frame(codec.encode(
                {"id": 1, "token": "0" * 64, "command": "destroy", "args": {"name": target}},
                "admin.request")),
            "wrong_token_shutdown": codec.frame(codec.encode(
                {"id": 2, "token": "chaos", "command": "shutdown", "args": {}},
                "admin.request")),
        }
        for label, payload in attempts.items():
            try:
                reply = client.raw(payload)
                results[label] = {"ok": reply.get("ok"), "error": (reply.get("error") or "")[:80]}
            except (AdminClientError, OSError, ValueError) as exc:
                results[label] = {"ok": None, "error": f"no reply: {exc}"[:80]}
        results["truncated"] = self.truncated_frame()
        self.wait(1.0)
        after = self.fresh_status()
        by2 = self.rows_by_path(after or [])
        groups2 = sorted(p for p in by2 if p.startswith("root/bots/") and p.count("/") == 2)
        refused = all(v["ok"] is False for k, v in results.items() if k != "truncated")
        unchanged = (after is not None and groups2 == groups
                     and by2.get("root/control", {}).get("pid") == control_pid
                     and self.fleet.proc.poll() is None)
        self.event("admin", target=target, replies=results, refused=refused,
                   unchanged=unchanged, ok=refused and unchanged)

    def truncated_frame(self) -> dict:
        """A header announcing 1000 bytes, 10 sent, then the write side closed."""
        try:
            with socket.create_connection(("127.0.0.1", self.fleet.ports["control"]),
                                          timeout=5) as s:
                s.sendall(struct.pack(">I", 1000) + b"0123456789")
                s.shutdown(socket.SHUT_WR)
                data = s.recv(4096)
            return {"ok": None, "error": f"connection closed, {len(data)} bytes of reply"}
        except OSError as exc:
            return {"ok": None, "error": f"{type(exc).__name__}: {exc}"[:80]}

    def fault_crash(self):
        picked = self.pick_part("crash", "bot")
        if picked is None:
            return
        name, path, r = picked
        bot = next(b for b, n in self.bot_ids.items() if n == name)
        self.tg.control.send_as(self.ops_user, bot, CRASH_TRIGGER)
        self.note_bot_fault(name)
        ev = self.event("crash", target=path,
                        pid=r["pid"] if self.base == "processes" else None,
                        restarts_before=r["restarts"])
        self.send_probes(name, ev)
        self.pending.append(ev)

        def crashed():
            if ev in self.pending:       # no restart: the bot refused the bad action instead
                self.pending.remove(ev)
                ev["crashed"] = False
                self.say(f"  {path} did not crash (the bad action was refused)")
        self.later(20.0, crashed)

    # ---- the schedule --------------------------------------------------------------------------
    def schedule(self) -> list[str]:
        p = self.p
        n = max(p["faults"], p["min_each"] * len(FAULT_KINDS))
        kinds = [k for k in FAULT_KINDS for _ in range(p["min_each"])]
        pool = [k for k, w in WEIGHTS.items() for _ in range(w)]
        kinds += [self.rng.choice(pool) for _ in range(n - len(kinds))]
        self.rng.shuffle(kinds)
        return kinds

    def run_faults(self):
        p = self.p
        kinds = self.schedule()
        duration = p["seconds"]
        start = time.monotonic()
        slot = duration / len(kinds)
        self.say(f"chaos: {len(kinds)} faults over {duration:.0f}s (seed {p['seed']}): "
                 + ", ".join(f"{k} x{kinds.count(k)}" for k in FAULT_KINDS))
        for i, kind in enumerate(kinds):
            due = start + i * slot + self.rng.uniform(0.1, 0.6) * slot
            self.wait(max(0.0, due - time.monotonic()))
            getattr(self, f"fault_{kind}")()
        self.wait(max(0.0, start + duration - time.monotonic()))

    def drain(self) -> dict:
        self.wait_for_baseline()
        snap = self.crowd_snapshot(stop=True)
        self.crowd_totals.append(snap)
        self.say(f"crowd stopped: {snap['sent']} sent, {snap['answered']} answered "
                 f"(this server incarnation); draining")
        t = time.monotonic()
        last, stable_since = None, time.monotonic()
        while time.monotonic() - t < self.p["drain_cap"]:
            self.wait(1.0)
            try:
                answered = self.tg.control.crowd_stats()["answered"]
            except OSError:
                continue
            cur = (answered, self.drops.ok_total)
            if cur != last:
                last, stable_since = cur, time.monotonic()
            elif time.monotonic() - stable_since >= self.p["drain_idle"] \
                    and self.drops.queue_depth == 0:
                break
        waited = round(time.monotonic() - t, 1)
        final = self.crowd_snapshot(stop=False)
        self.crowd_totals[-1] = final
        bounded = time.monotonic() - t >= self.p["drain_cap"]
        self.say(f"drained in {waited}s{' (cap reached)' if bounded else ''}: "
                 f"{final['answered']} of {final['sent']} answered in this incarnation")
        return {"drain_s": waited, "cap_reached": bounded}

    # ---- the end -------------------------------------------------------------------------------
    def finish(self, drain: dict, warm: dict) -> list[dict]:
        p = self.p
        rows = self.fresh_status() or []
        self.drops.scrape()
        end_mem = self.memory("end")
        self.scan_processes()
        # the fleet: stop it, then look for anything left
        launcher = self.fleet.proc.pid
        rc, stop_s, forced = self.fleet.stop(grace=60)
        self.say(f"fleet stopped: exit code {rc} in {stop_s:.1f}s{' (forced)' if forced else ''}")
        time.sleep(1.0)
        left = self.leftovers(launcher)
        for item in left:
            signal_pid(item["pid"], signal.SIGKILL)
        tg_rc = self.tg.stop()
        self.say(f"local Telegram stopped: exit code {tg_rc}")
        checks = []
        # 1. accounting
        world = world_accounting(self.tg.db_path, self.bot_ids, p["dedup_window"])
        logged = self.logged_stop_drops()
        metric = self.drops.by_bot()
        per_bot, uncounted, over = {}, 0, 0
        for name in self.names:
            w = world["per_bot"][name]
            m = metric.get(name, {"queue_full": 0, "dropped": 0})
            lg = logged.get(name, {})
            counted = m["queue_full"] + m["dropped"] + sum(lg.values())
            gap = w["unanswered"] - counted
            uncounted += max(0, gap)
            over += max(0, -gap)
            lost = w.pop("unanswered_ids")
            near = self.near_restarts(name, lost) if gap > 0 else []
            per_bot[name] = dict(w, counted_drops=counted, metrics=m, logged_stop_drops=lg,
                                 uncounted=max(0, gap), over_counted=max(0, -gap),
                                 unanswered_near_bot_restarts=near[:50])
        t = world["total"]
        counted_total = sum(v["counted_drops"] for v in per_bot.values())
        crowd = self.crowd_sum()
        checks.append(self.check(
            "accounting", uncounted == 0 and not drain["cap_reached"],
            f"sent {t['sent']} (crowd {t['crowd']}, burst {t['burst']}, probes {t['probe']}) "
            f"= answered "
            f"{t['answered']} + unanswered {t['unanswered']}; counted drops {counted_total} "
            f"(metrics queue_full {sum(m['queue_full'] for m in metric.values())}, dropped "
            f"{sum(m['dropped'] for m in metric.values())}; logged at stop "
            f"{sum(sum(v.values()) for v in logged.values())}); unanswered without a counted "
            f"drop: {uncounted} (unanswered messages of those bots sent around a restart of "
            f"their bot: {sum(len(v['unanswered_near_bot_restarts']) for v in per_bot.values())}"
            f"); drops counted for answered messages: {over}; "
            f"crowd send errors (server down) {crowd['errors']}",
            world=world, per_bot=per_bot, crowd=crowd, drain=drain,
            metrics_scrapes=self.drops.scrapes, metrics_failures=self.drops.failures,
            exporter_epochs=self.drops.epochs, blind_windows=self.drops.blind,
            metrics_decreases=self.drops.decreases,
            not_measurable="drops a SIGKILLed bot had not reported yet (it reports about a "
                           "second after a change), drops in the blind windows after an "
                           "exporter restart, and the actions a SIGKILLed bot held in its "
                           "queue (they die with it, nothing counts them); drops are counted "
                           "per bot, not per message"))
        # 2. duplicates
        checks.append(self.check(
            # The criterion: no duplicate reply beyond the dedup window. Inside it, a
            # SIGKILL between an answer and its dedup key reaching the store (at most
            # DEDUP_RECORD_S, 50 ms) can still produce one: at-most-once dedup, reported here.
            "duplicates", world["duplicates_beyond_window"] == 0,
            f"dedup window {p['dedup_window']} keys per bot (bot LRU dedup_size and store "
            f"dedup_max); crowd_stats duplicates {crowd['duplicates']}; answered twice in the "
            f"world: {t['duplicates']} (within the window {world['duplicates_within_window']}, "
            f"beyond it {world['duplicates_beyond_window']})"))
        # 3. database is locked
        hits = self.grep_locked()
        checks.append(self.check("db_locked", not hits,
                                 f"{len(hits)} 'database is locked' lines in "
                                 f"{', '.join(self.log_files())}", hits=hits[:20]))
        # 4. orphans
        checks.append(self.check(
            "orphans", rc == 0 and not forced and not left,
            f"launcher exit code {rc} after {stop_s:.1f}s{' (forced)' if forced else ''}; "
            f"{len(left)} processes left (session {launcher}, --config on the command line, "
            f"{len(self.seen)} pids seen during the run, parent PID 1)", left=left))
        # 5. integrity
        files = self.sqlite_files()
        res = {str(f.relative_to(self.workdir)): integrity(f) for f in files}
        checks.append(self.check("integrity", bool(res) and all(v == "ok" for v in res.values()),
                                 "; ".join(f"{k}: {v}" for k, v in res.items()), files=res))
        # 6. memory
        cap = p["mem_cap_mb"]
        ratio = end_mem["pss_mb"] / warm["pss_mb"] if warm["pss_mb"] else float("inf")
        checks.append(self.check(
            "memory", ratio <= p["mem_ratio"] and end_mem["pss_mb"] <= cap,
            f"PSS after warm-up {warm['pss_mb']} MB ({warm['processes']} processes) -> end "
            f"{end_mem['pss_mb']} MB ({end_mem['processes']} processes): {ratio:.2f}x "
            f"(limit {p['mem_ratio']}x, cap {cap} MB)",
            warm=warm, end=end_mem, samples=self.mem_samples))
        # 7. faults had their effect; every actor runs at the end
        not_running = [r["path"] for r in rows if r["state"] != "running"]
        failed = [e for e in self.events if e.get("ok") is False]
        unrecovered = [f"{e['kind']} {e.get('target')}" for e in self.pending]
        counts = {k: sum(1 for e in self.events if e["kind"] == k and not e.get("note"))
                  for k in FAULT_KINDS}
        skipped = sum(1 for e in self.events if e.get("note", "").startswith("skipped"))
        checks.append(self.check(
            "faults", not failed and not unrecovered and not not_running and bool(rows),
            ", ".join(f"{k} {v}" for k, v in counts.items()) + f" (skipped {skipped}); "
            f"failed {len(failed)}; not recovered {len(unrecovered)}; actors not running at "
            f"the end {len(not_running)} of {len(rows)}",
            failed=[{k: e.get(k) for k in ('t', 'kind', 'target', 'note')} for e in failed],
            unrecovered=unrecovered, not_running=not_running,
            recovery_s=self.recovery_stats(), restarts={r["path"]: r["restarts"] for r in rows
                                                        if r["restarts"]}))
        return checks

    def near_restarts(self, name: str, lost: list) -> list:
        """Unanswered messages of bot NAME sent from 1 s before to 2 s after a fault that
        restarted its bot actor (a crash, a kill of its bot, group or backend, a stall), with
        the fault: where messages without a counted drop come from."""
        out = []
        faults = []
        for e in self.events:
            target = str(e.get("target") or "")
            if e.get("note") or not target.startswith(f"root/bots/{name}"):
                continue
            t = datetime.datetime.fromisoformat(e["time"]).timestamp()
            faults.append((t, t + (e.get("recovered_s") or 0.0), e))
        for mid, date in lost:
            if date is None:
                continue
            for t0, t1, e in faults:
                if t0 - 1.0 <= date <= t1 + 2.0:
                    out.append({"message_id": mid, "sent_at": date, "fault": e["kind"],
                                "fault_target": e["target"], "fault_t": e["t"]})
                    break
        return out

    def check(self, name: str, passed: bool, numbers: str, **detail) -> dict:
        return {"check": name, "result": "PASS" if passed else "FAIL", "numbers": numbers,
                **({"detail": detail} if detail else {})}

    def crowd_sum(self) -> dict:
        out = {k: sum(c.get(k) or 0 for c in self.crowd_totals)
               for k in ("sent", "answered", "unanswered", "duplicates", "errors",
                         "unmatched_bot_messages")}
        out["incarnations"] = self.crowd_totals
        return out

    def recovery_stats(self) -> dict:
        out = {}
        for e in self.events:
            if "recovered_s" in e:
                out.setdefault(e["kind"], []).append(e["recovered_s"])
        return {k: {"n": len(v), "max_s": max(v), "mean_s": round(sum(v) / len(v), 2)}
                for k, v in out.items()}

    def logged_stop_drops(self) -> dict:
        out: dict[str, dict] = {}
        for m in STOP_DROPS.finditer(self.fleet.output()):
            try:
                lost = ast.literal_eval(m.group(2))
            except (ValueError, SyntaxError):
                continue
            d = out.setdefault(m.group(1), {})
            for reason, n in lost.items():
                d[reason] = d.get(reason, 0) + int(n)
        return out

    def log_files(self) -> list[str]:
        files = [self.fleet.log_path, self.tg.log_path]
        files += [f for f in self.workdir.rglob("*.log") if f not in files]
        return [str(f.relative_to(self.workdir)) for f in files if f.exists()]

    def grep_locked(self) -> list[str]:
        hits = []
        for rel in self.log_files():
            with open(self.workdir / rel, errors="replace") as fh:
                for line in fh:
                    if "database is locked" in line.lower():
                        hits.append(f"{rel}: {line.strip()[:200]}")
        return hits

    def sqlite_files(self) -> list[Path]:
        out = []
        for f in sorted(self.workdir.rglob("*")):
            if not f.is_file() or f.name.endswith(("-wal", "-shm", "-journal")):
                continue
            with open(f, "rb") as fh:
                if fh.read(16) == b"SQLite format 3\x00":
                    out.append(f)
        return out

    def leftovers(self, launcher: int) -> list[dict]:
        psutil = _psutil()
        found = {}
        for p in session_members(launcher):
            found[p.pid] = "session"
        for p in processes_with(str(self.fleet.config_path)):
            found.setdefault(p.pid, "command line")
        for pid, (created, _cmd) in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    found.setdefault(pid, "seen during the run")
            except psutil.NoSuchProcess:
                continue
        out = []
        for pid, why in sorted(found.items()):
            try:
                proc = psutil.Process(pid)
                out.append({"pid": pid, "why": why, "ppid": proc.ppid(),
                            "cmd": cmdline_of(proc)[:160]})
            except psutil.NoSuchProcess:
                continue
        return out

    # ---- cleanup (also on errors and signals) --------------------------------------------------
    def cleanup(self):
        if self.fleet is not None and self.fleet.proc is not None:
            if self.fleet.proc.poll() is None:
                self.say("cleanup: stopping the fleet")
                self.fleet.stop(grace=30)
            for p in session_members(self.fleet.proc.pid) + \
                    processes_with(str(self.fleet.config_path)):
                self.say(f"cleanup: SIGKILL leftover pid {p.pid}")
                signal_pid(p.pid, signal.SIGKILL)
        if self.tg is not None and self.tg.tg is not None:
            try:
                signal_pid(self.tg.tg.pid, signal.SIGCONT)
                self.tg.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                self.say(f"cleanup: local Telegram stop failed: {exc}")
        if self.tg is not None:
            for pid in self.tg.pids:
                if pid_alive(pid):
                    signal_pid(pid, signal.SIGKILL)


# ---- entry point --------------------------------------------------------------------------------

def table(checks: list[dict]) -> str:
    w = max(len(c["check"]) for c in checks)
    lines = [f"{'CHECK'.ljust(w)}  RESULT  NUMBERS"]
    for c in checks:
        lines.append(f"{c['check'].ljust(w)}  {c['result']:<6}  {c['numbers']}")
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="length of the chaos phase")
    ap.add_argument("--seconds", type=float, help="length of the chaos phase (overrides minutes)")
    ap.add_argument("--base", choices=["processes", "inprocess"], default="processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bots", type=int, default=6)
    ap.add_argument("--json", dest="json_out", help="write the result here")
    ap.add_argument("--workdir", help="empty or new directory (default: a fresh temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp workdir")
    ap.add_argument("--users", type=int, default=20, help="crowd users")
    ap.add_argument("--rate", type=float, default=4.0, help="crowd messages per second")
    ap.add_argument("--faults", type=int, help="number of faults (default: one per --interval s)")
    ap.add_argument("--interval", type=float, default=7.0, help="mean seconds between faults")
    ap.add_argument("--min-each", type=int, default=1, help="at least this many of each kind")
    ap.add_argument("--queue-max", type=int, default=50, help="queue_max of the burst bot")
    ap.add_argument("--burst", type=int, default=300, help="messages per burst")
    ap.add_argument("--burst-users", type=int, default=10)
    ap.add_argument("--probes", type=int, default=3,
                    help="messages sent right after each fault that restarts a bot")
    ap.add_argument("--flood-limits", action=argparse.BooleanOptionalAction, default=True,
                    help="the local Telegram enforces Telegram's flood limits")
    ap.add_argument("--probe-interval", type=float, default=2.0,
                    help="supervision.probe_interval_s written into the fleet's config (the "
                         "stall lasts up to 2 x interval x (misses + 1) + 2 s)")
    ap.add_argument("--probe-misses", type=int, default=3)
    ap.add_argument("--stall-s", type=float, help="longest SIGSTOP of a backend "
                    "(default: 2 x the probe timeout + 2 s)")
    ap.add_argument("--tg-down-s", type=float, default=2.0, help="server down time on restart")
    ap.add_argument("--warmup", type=float, default=12.0, help="seconds of traffic before faults")
    ap.add_argument("--drain-cap", type=float, default=90.0)
    ap.add_argument("--drain-idle", type=float, default=5.0)
    ap.add_argument("--mem-ratio", type=float, default=1.5)
    ap.add_argument("--mem-cap-mb", type=float,
                    help="absolute PSS cap at the end (default: 1.5 x the size at rest: "
                         "processes 100 MB + 130 MB per bot, inprocess 60 MB + 10 MB per bot; "
                         "see bench/CHAOS.md)")
    ap.add_argument("--start-timeout", type=float, default=120.0)
    return ap.parse_args(argv)


# PSS at rest measured on this machine (bench/CHAOS.md): processes base ~100 MB for the core
# (launcher, thespian admin + logger, root, 6 services) + ~130 MB per bot (backend 60-80 MB with
# its Telegram library, bot ~30 MB, bot group ~10-35 MB); in-process ~60 MB + ~10 MB per bot.
REST_MB = {"processes": (100.0, 130.0), "inprocess": (60.0, 10.0)}


def report_silence_s() -> float:
    """The longest an actor stays silent towards the metrics exporter (it reports on change,
    and at least every IDLE_REPORT_S when idle; every REPORT_INTERVAL in older versions)."""
    from system.metrics_client import REPORT_INTERVAL, MetricsBuffer
    return float(getattr(MetricsBuffer, "IDLE_REPORT_S", REPORT_INTERVAL))


def default_mem_cap(base: str, bots: int) -> float:
    core, per_bot = REST_MB[base]
    return round(1.5 * (core + per_bot * bots), 0)


def params(a) -> dict:
    seconds = a.seconds if a.seconds is not None else a.minutes * 60.0
    if a.bots < 2:
        raise SystemExit("--bots: at least 2")
    return {
        "seconds": seconds, "base": a.base, "seed": a.seed, "bots": a.bots,
        "users": a.users, "rate": a.rate,
        "faults": a.faults if a.faults is not None else max(1, int(seconds / a.interval)),
        "min_each": a.min_each, "queue_max": a.queue_max, "burst": a.burst,
        "burst_users": a.burst_users, "probes": a.probes, "flood_limits": a.flood_limits,
        "probe_interval": a.probe_interval, "probe_misses": a.probe_misses,
        "stall_s": a.stall_s or 2 * a.probe_interval * (a.probe_misses + 1) + 2.0,
        "tg_down_s": a.tg_down_s, "warmup": a.warmup,
        "drain_cap": a.drain_cap, "drain_idle": a.drain_idle, "mem_ratio": a.mem_ratio,
        "mem_cap_mb": a.mem_cap_mb or default_mem_cap(a.base, a.bots),
        "start_timeout": a.start_timeout, "dedup_window": 10000,
        "max_bot_faults_per_min": 3,
    }


def code_under_test() -> dict:
    """The commit the fleet ran from, and what differed from it in the working tree (other
    people commit while a run goes on: the fleet runs whatever the tree holds at its start)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=str(REPO), capture_output=True, text=True,
                                  timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "modified": [line[3:] for line in git("status", "--porcelain", "--untracked-files=no")
                         .splitlines()]}


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    a = parse_args(argv)
    p = params(a)
    own_dir = a.workdir is None
    p["workdir"] = a.workdir or tempfile.mkdtemp(prefix="tgfleet-chaos-")
    if not own_dir and Path(p["workdir"]).exists() and any(Path(p["workdir"]).iterdir()):
        print(f"--workdir {p['workdir']} is not empty", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    run = ChaosRun(p)
    result = {"params": p, "code": code_under_test(),
              "command": " ".join(["python -m bench.chaos"] + list(argv or sys.argv[1:]))}
    code = 2
    try:
        run.setup()
        run.say(f"warm-up: {p['warmup']:.0f}s of traffic ({p['users']} users, {p['rate']}/s)")
        run.wait(p["warmup"])
        warm = run.memory("warm")
        run.say(f"PSS after warm-up: {warm['pss_mb']} MB in {warm['processes']} processes")
        run.run_faults()
        drain = run.drain()
        checks = run.finish(drain, warm)
        print()
        print(table(checks))
        result.update(checks=checks, events=run.events,
                      passed=all(c["result"] == "PASS" for c in checks))
        code = 0 if result["passed"] else 1
    except Exception as exc:    # any harness or fleet failure: report it, then clean up
        import traceback
        traceback.print_exc()
        run.say(f"ERROR: {type(exc).__name__}: {exc}")
        result.update(error=f"{type(exc).__name__}: {exc}", events=run.events, passed=False)
    except KeyboardInterrupt as exc:
        run.say(f"interrupted ({exc}): cleaning up")
        result.update(error=f"interrupted: {exc}", events=run.events, passed=False)
        code = 130
    finally:
        run.cleanup()
        result["duration_s"] = run.now()
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(result, indent=2, default=str))
            run.say(f"result in {a.json_out}")
        if own_dir and not a.keep and code == 0:
            import shutil
            shutil.rmtree(p["workdir"], ignore_errors=True)
        elif own_dir:
            run.say(f"workdir kept: {p['workdir']}")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Systems under test: start and stop tgfleet (either base) or a baseline script against a given
local Telegram, find their processes, and wait until every bot answers.

Why: every workload does the same thing with every system — start it against a fresh server,
measure how long until all bots answer, load it, measure it, end it — so the systems share one
small interface:

    sut = make_sut("tgfleet-processes", world, workdir, options)
    sut.start()                      # spawn (own session, output to workdir/<name>.log)
    sut.wait_ready(timeout)          # its own "ready" line ("N of N bots running" for tgfleet)
    wait_all_answering(world, ...)   # a probe from a simulated user answered by every bot
    sut.processes()                  # psutil processes of the system (for RSS/PSS/CPU)
    sut.stop()                       # SIGTERM by PID, then the process group / session

A World is the server side of one run: the local Telegram process, N fresh bot accounts, a probe
user and an accounts file in the format the baselines read.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import harness
from bench.tomlout import toml_value as _toml
from system.boot import free_port
from system.localtg.testing import run_local_telegram

SYSTEMS = ("baseline-a", "baseline-b", "tgfleet-inprocess", "tgfleet-processes")
SYSTEM_LABELS = {
    "baseline-a": "(a) telethon + global lock",
    "baseline-b": "(b) pyrogram compose()",
    "tgfleet-inprocess": "tgfleet inprocess",
    "tgfleet-processes": "tgfleet processes",
}
TGFLEET_FILES = ("actors/bot.py", "actors/backends/telethon_backend.py")
# The echo workloads run with the server's flood limits off; tgfleet's own limiter is opened up
# to match (it still runs: every send still asks it for a grant), so the comparison is about
# the design, not about one side obeying limits the other ignores.
OPEN_RATELIMIT = {"bot_per_s": 1e6, "bot_burst": 100000, "chat_per_s": 1e6, "chat_burst": 100000,
                  "group_per_min": 1e6, "group_burst": 100000, "user_account_per_s": 1e6}


def tgfleet_missing() -> list[str]:
    """Files tgfleet needs to run real bots that are not committed yet (empty when wired)."""
    return [f for f in TGFLEET_FILES if not (harness.REPO_ROOT / f).exists()]


# ------------------------------------------------------------------ the server side -----------
@dataclass
class World:
    tg: object                      # system.localtg.testing.LocalTelegramProcess
    bots: list                      # create_account results, in order
    probe_user: dict
    accounts_path: str
    workdir: Path
    probe_since: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def control(self):
        return self.tg.control

    @property
    def bot_ids(self) -> list[int]:
        return [b["user_id"] for b in self.bots]


@contextlib.contextmanager
def local_world(workdir, n_bots: int, flood_limits: bool = False, delay_ms: float = 0.0):
    """A fresh local Telegram (its own process, ended by PID on exit) with N_BOTS bots."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with run_local_telegram(workdir, flood_limits=flood_limits, delay_ms=delay_ms,
                            log_level="WARNING") as tg:
        harness.track_session(tg.pid)
        c = tg.control
        bots = [c.create_account("bot", username="bench%d_bot" % i, first_name="Bench %d" % i)
                for i in range(n_bots)]
        probe = c.create_account("user", username="bench_probe", first_name="Probe")
        path = workdir / "accounts.json"
        path.write_text(json.dumps({"accounts": bots, "rsa_public_key": tg.rsa_public_key}))
        yield World(tg=tg, bots=bots, probe_user=probe, accounts_path=str(path), workdir=workdir)


def wait_all_answering(world: World, bot_ids, timeout: float, resend_s: float = 0.25,
                       text: str = "probe") -> float | None:
    """Send a probe from the probe user to every bot in BOT_IDS until each has answered one;
    returns time.monotonic() when the last one answered, None on timeout."""
    c = world.control
    uid = world.probe_user["user_id"]
    pending = {int(b): 0.0 for b in bot_ids}
    deadline = time.monotonic() + timeout
    n = 0
    while pending and time.monotonic() < deadline:
        now = time.monotonic()
        for b, last in list(pending.items()):
            if now - last >= resend_s:
                n += 1
                c.send_as(uid, b, "%s %d" % (text, n))
                pending[b] = now
        while True:
            msgs = c.received(uid, since_id=world.probe_since, limit=1000)
            for m in msgs:
                world.probe_since = max(world.probe_since, m["id"])
                pending.pop(m["from_id"], None)
            if len(msgs) < 1000:
                break
        if pending:
            time.sleep(0.01)
    return None if pending else time.monotonic()


# ------------------------------------------------------------------ systems -------------------
class SUT:
    name = "?"
    ready_needle = "ready"
    stop_grace = 15.0

    def __init__(self, world: World, workdir: Path, options: dict):
        self.world = world
        self.workdir = Path(workdir)
        self.options = options
        self.proc = None
        self.log_path = self.workdir / f"{self.name}.log"
        self.t_spawn = None
        self._log_offset = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> float:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.t_spawn = time.monotonic()
        self.proc = harness.spawn(self.command(), self.log_path)
        return self.t_spawn

    def wait_ready(self, timeout: float) -> float | None:
        return harness.wait_for_line(self.log_path, self.ready_needle, self.proc, timeout,
                                     self._log_offset)

    def processes(self):
        if self.proc is None or self.proc.poll() is not None:
            return []
        return harness.sut_processes(self.proc.pid)

    def stop(self, grace: float | None = None) -> dict:
        if self.proc is None:
            return {"exit_code": None, "stop_s": 0.0}
        t0 = time.monotonic()
        code = harness.terminate(self.proc, self.stop_grace if grace is None else grace)
        return {"exit_code": code, "stop_s": round(time.monotonic() - t0, 2)}

    def roles(self) -> dict:
        """{pid: what it is} for the memory breakdown."""
        return {self.proc.pid: self.name} if self.proc is not None else {}

    def describe(self) -> dict:
        return {"name": self.name, "command": " ".join(self.command())}


class BaselineSUT(SUT):
    module = ""
    stop_grace = 3.0     # a script with thousands of queued handlers: no point waiting long

    def command(self) -> list[str]:
        cmd = [harness.python(), "-m", self.module, "--accounts", self.world.accounts_path,
               "--bots", ",".join(b["username"] for b in self.world.bots),
               "--host", self.world.tg.host, "--port", str(self.world.tg.port)]
        if self.options.get("provisioned"):
            cmd.append("--provisioned")
        return cmd


class TelethonLockSUT(BaselineSUT):
    name = "baseline-a"
    module = "bench.baseline_telethon_lock"


class PyrogramComposeSUT(BaselineSUT):
    name = "baseline-b"
    module = "bench.baseline_pyrogram_compose"

    def command(self) -> list[str]:
        cmd = super().command()
        if self.options.get("pyrogram_cache"):
            cmd += ["--max-message-cache-size", str(self.options["pyrogram_cache"])]
        return cmd




class TgfleetSUT(SUT):
    """`python -m system.cli run --config FILE` with the world's bots as [[bots]]."""

    # Longer than tgfleet's own shutdown_timeout_s (15 s), after which the launcher forces the
    # stop itself: a SIGKILL from the harness then means its own forcing did not work either.
    stop_grace = 25.0

    def __init__(self, world: World, workdir: Path, options: dict, base: str):
        self.base = base
        self.name = f"tgfleet-{base}"
        super().__init__(world, workdir, options)
        n = len(world.bots)
        self.ready_needle = f"{n} of {n} bots running"
        self.ports = {k: free_port() for k in ("admin", "control", "metrics")}
        self.data_dir = self.workdir / f"{self.name}-var"
        self.config_path = self.workdir / f"{self.name}.toml"
        self.write_config()

    def bot_name(self, i: int) -> str:
        return "bench%d" % i

    def write_config(self) -> None:
        o = self.options
        lines = [
            "[system]", f"base = {_toml(self.base)}", f"admin_port = {self.ports['admin']}",
            f"memory_merge = {_toml(o.get('memory_merge', 'auto'))}",
            *([f"process_unit = {_toml(o['process_unit'])}"]
              if o.get("process_unit", "config") != "config" else []),
            f"data_dir = {_toml(str(self.data_dir))}", "",
            "[control]", f"port = {self.ports['control']}", "",
            "[metrics]", f"port = {self.ports['metrics']}", "",
            "[log]", f"level = {_toml(o.get('tgfleet_log_level', 'WARNING'))}", "",
            "[localtg]", "enabled = false", "",
        ]
        rl = o.get("tgfleet_ratelimit")
        if rl:
            lines += ["[ratelimit]"] + [f"{k} = {_toml(v)}" for k, v in rl.items()] + [""]
        server = {"host": self.world.tg.host, "port": int(self.world.tg.port),
                  "rsa_public_key": self.world.tg.rsa_public_key}
        for i, b in enumerate(self.world.bots):
            lines += ["[[bots]]", f"name = {_toml(self.bot_name(i))}",
                      f"library = {_toml(o.get('tgfleet_library', 'telethon'))}",
                      'account_kind = "bot"', f"token = {_toml(b['bot_token'])}",
                      'handlers = [{type = "echo"}]', f"server = {_toml(server)}", ""]
        self.config_path.write_text("\n".join(lines))

    def command(self) -> list[str]:
        return [harness.python(), "-m", "system.cli", "run", "--config", str(self.config_path)]

    def start(self) -> float:
        harness.track_cmdline(str(self.config_path))
        return super().start()

    def processes(self):
        """The launcher, and on the processes base thespian's admin, logger and every actor
        process: the admin double-forks into its own session, so they are found by the
        --config path every process of this run carries on its command line."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return harness.sut_processes(self.proc.pid,
                                     also=harness.processes_matching(str(self.config_path)))

    def stop(self, grace: float | None = None) -> dict:
        out = super().stop(grace)
        killed = harness.kill_matching(str(self.config_path), wait=5.0)
        if killed:
            out["killed_leftovers"] = killed
        return out

    def admin(self):
        from system.admin_client import AdminClient, read_token
        token = read_token(str(self.data_dir / "admin.token"))
        return AdminClient("127.0.0.1", self.ports["control"], token, timeout=10)

    def status(self) -> list[dict]:
        """`ops/ctl status --json`'s actor rows: path, kind, state, restarts, pid, ..."""
        return self.admin().call("status")["actors"]

    def roles(self) -> dict:
        """{pid: actor paths} from `ctl status` (several actors share a pid on inprocess), plus
        the launcher and thespian's admin/logger ("thespian" when not an actor)."""
        out = {self.proc.pid: "launcher"} if self.proc is not None else {}
        try:
            rows = self.status()
        except Exception as exc:   # the breakdown is a nicety; the totals do not need it
            return dict(out, error=str(exc))
        for row in rows:
            pid = row.get("pid")
            if pid:
                out[pid] = (out[pid] + "," + row["path"]) if pid in out else row["path"]
        for p in self.processes():
            out.setdefault(p.pid, "thespian admin/logger")
        return out

    def actor_pid(self, path: str) -> int | None:
        for row in self.status():
            if row["path"] == path:
                return row.get("pid")
        return None

    def backend_path(self, i: int) -> str:
        return f"root/bots/{self.bot_name(i)}/backend"



def make_sut(system: str, world: World, workdir, options: dict) -> SUT:
    if system == "baseline-a":
        return TelethonLockSUT(world, workdir, options)
    if system == "baseline-b":
        return PyrogramComposeSUT(world, workdir, options)
    if system in ("tgfleet-inprocess", "tgfleet-processes"):
        return TgfleetSUT(world, workdir, options, system.split("-", 1)[1])
    raise ValueError(f"unknown system {system!r}; known: {SYSTEMS}")


def skip_reason(system: str) -> str | None:
    """Why SYSTEM cannot run on this checkout (None: it can)."""
    if system.startswith("tgfleet"):
        missing = tgfleet_missing()
        if missing:
            return ("tgfleet is not wired yet: %s not committed (the bot actor and Telethon "
                    "backend are being written)" % ", ".join(missing))
    return None
